//! The `dns_query` fuzz target: any bytes as a query against a sample zone.

use crate::config::node::NodeInfo;
use crate::control::model::LbState;
use crate::dns::{answer, DnsZone, Transport};
use simple_dns::{Packet, PacketFlag, ResourceRecord};

/// Invariants: no panic; a reply parses back with the library, carries the query's id
/// and the QR bit; over UDP it fits 512 bytes or the query's EDNS size (at most 1232);
/// every record in it is owned by a name under the zone's domain.
pub fn dns_query(data: &[u8]) {
    static ZONE: std::sync::OnceLock<DnsZone> = std::sync::OnceLock::new();
    let zone = ZONE.get_or_init(sample_zone);
    for transport in [Transport::Udp, Transport::Tcp] {
        let Some(reply) = answer(data, zone, transport) else {
            continue;
        };
        let parsed = match Packet::parse(&reply) {
            Ok(p) => p,
            Err(e) => panic!("reply does not parse back: {e:?} {reply:02x?}"),
        };
        assert!(parsed.has_flags(PacketFlag::RESPONSE));
        assert_eq!(&reply[..2], &data[..2], "reply id is not the query's");
        if transport == Transport::Udp {
            assert!(reply.len() <= 1232, "UDP reply of {} bytes", reply.len());
            let edns = Packet::parse(data).ok().and_then(|q| q.opt().map(|_| ()));
            assert!(edns.is_some() || reply.len() <= 512);
        }
        let sections = [
            &parsed.answers,
            &parsed.name_servers,
            &parsed.additional_records,
        ];
        for record in sections.into_iter().flatten() {
            assert!(
                under(record, &zone.domain),
                "record outside the zone: {record:?}"
            );
        }
    }
}

fn under(record: &ResourceRecord, domain: &str) -> bool {
    let name = record.name.to_string().to_ascii_lowercase();
    name == domain || name.ends_with(&format!(".{domain}"))
}

/// Three load balancers (one with its own address, one in a zone no node serves) on
/// two nodes in two zones, both name servers, under a two-label domain.
fn sample_zone() -> DnsZone {
    let lb = |name: &str, zone: &str, address: Option<&str>| {
        let args = ["--name", name, "-l", "http:80"].map(String::from);
        let Ok(crate::cli::Command::Run(config)) = crate::cli::parse(&args) else {
            panic!("sample load balancer {name} is refused by the flags");
        };
        let mut lb = LbState::from_flags(&config.load_balancer, None);
        lb.zones = vec![zone.to_string()];
        lb.address = address.and_then(|a| a.parse().ok());
        lb
    };
    let lbs = [
        lb("web", "zone-a", None),
        lb("Api-1", "zone-b", Some("127.0.3.2")),
        lb("lonely", "zone-c", None),
    ];
    let node = |name: &str, zone: &str, ip: &str| {
        NodeInfo::this_node(name, zone, ip.parse().unwrap_or([127, 0, 0, 1].into()))
    };
    let mut nodes = [
        node("n1", "zone-a", "127.0.1.1"),
        node("n2", "zone-b", "::1"),
    ];
    // Both answer DNS (two NS with glue); n1 has a pool address for "web" only.
    nodes[0].dns = Some([127, 0, 1, 53].into());
    nodes[1].dns = Some([127, 0, 1, 1].into());
    nodes[0].addresses = Some([("web".to_string(), [127, 0, 1, 9].into())].into());
    DnsZone::build("elb.localhost", &lbs, &nodes, "n2", [127, 0, 1, 1].into())
}
