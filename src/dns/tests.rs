//! The zone's rules that a single node cannot show over sockets: zones filtering nodes,
//! several nodes, truncation, and the drop/FORMERR edges.

use super::answer::{answer, Transport};
use super::zone::DnsZone;
use crate::config::node::NodeInfo;
use crate::control::model::LbState;
use simple_dns::{Name, Packet, PacketFlag, Question, CLASS, QCLASS, QTYPE, RCODE, TYPE};
use std::net::IpAddr;

fn lb(name: &str, zones: &[&str], address: Option<&str>) -> LbState {
    let args = ["--name", name, "-l", "http:80"].map(String::from);
    let Ok(crate::cli::Command::Run(config)) = crate::cli::parse(&args) else {
        panic!("flags refused");
    };
    let mut lb = LbState::from_flags(&config.load_balancer, None);
    lb.zones = zones.iter().map(|z| z.to_string()).collect();
    lb.address = address.map(|a| a.parse().expect("address"));
    lb
}

fn node(name: &str, zone: &str, ip: &str) -> NodeInfo {
    NodeInfo::this_node(name, zone, ip.parse().expect("address"))
}

fn query(name: &str, qtype: TYPE) -> Vec<u8> {
    let mut q = Packet::new_query(0xbeef);
    q.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(qtype),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    q.build_bytes_vec().expect("query")
}

fn addresses(zone: &DnsZone, name: &str, transport: Transport) -> (RCODE, Vec<IpAddr>, bool) {
    let bytes = answer(&query(name, TYPE::A), zone, transport).expect("an answer");
    let reply = Packet::parse(&bytes).expect("parses");
    let ips = reply
        .answers
        .iter()
        .filter_map(|r| match &r.rdata {
            simple_dns::rdata::RData::A(a) => Some(IpAddr::V4(a.address.into())),
            _ => None,
        })
        .collect();
    (reply.rcode(), ips, reply.has_flags(PacketFlag::TRUNCATION))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

#[test]
fn only_nodes_in_enabled_zones_are_listed_and_the_pool_address_is_this_nodes() {
    let nodes = [
        node("n1", "zone-a", "127.0.1.1"),
        node("n2", "zone-b", "127.0.2.1"),
        node("n3", "zone-c", "127.0.3.1"),
    ];
    let lbs = [
        lb("ab", &["zone-a", "zone-b"], None),
        lb("pooled", &["zone-a", "zone-b"], Some("10.0.0.9")),
        lb("nowhere", &["zone-d"], None),
    ];
    let zone = DnsZone::build("elb.localhost", &lbs, &nodes, "n2", ip("127.0.2.1"));
    let (rcode, ips, _) = addresses(&zone, "ab.elb.localhost", Transport::Udp);
    assert_eq!(rcode, RCODE::NoError);
    assert_eq!(ips, [ip("127.0.1.1"), ip("127.0.2.1")]);
    let (_, ips, _) = addresses(&zone, "pooled.elb.localhost", Transport::Udp);
    assert_eq!(ips, [ip("10.0.0.9"), ip("127.0.1.1")]);
    // No live node in its zones: the name exists, without addresses (NODATA).
    let (rcode, ips, _) = addresses(&zone, "nowhere.elb.localhost", Transport::Udp);
    assert_eq!((rcode, ips.len()), (RCODE::NoError, 0));
}

#[test]
fn names_differing_only_in_case_belong_to_the_first_created() {
    let nodes = [node("n1", "", "127.0.1.1")];
    let lbs = [
        lb("Web", &["zone-a"], Some("10.0.0.1")),
        lb("web", &["zone-a"], Some("10.0.0.2")),
    ];
    let zone = DnsZone::build("elb.localhost", &lbs, &nodes, "n1", ip("127.0.1.1"));
    let (_, ips, _) = addresses(&zone, "WEB.elb.localhost", Transport::Tcp);
    assert_eq!(ips, [ip("10.0.0.1")]);
}

#[test]
fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let nodes: Vec<NodeInfo> = (1..=100)
        .map(|i| node(&format!("n{i}"), "zone-a", &format!("127.0.{i}.1")))
        .collect();
    let lbs = [lb("big", &["zone-a"], None)];
    let zone = DnsZone::build("elb.localhost", &lbs, &nodes, "n1", ip("127.0.1.1"));
    let (_, ips, tc) = addresses(&zone, "big.elb.localhost", Transport::Udp);
    assert!(
        tc && ips.is_empty(),
        "UDP: {} addresses, TC {tc}",
        ips.len()
    );
    let (_, ips, tc) = addresses(&zone, "big.elb.localhost", Transport::Tcp);
    assert!(
        !tc && ips.len() == 100,
        "TCP: {} addresses, TC {tc}",
        ips.len()
    );
}

#[test]
fn malformed_queries_get_formerr_with_their_id_and_responses_are_dropped() {
    let zone = DnsZone::build("elb.localhost", &[], &[], "", ip("127.0.0.1"));
    let mut bad = query("x.elb.localhost", TYPE::A);
    bad.truncate(bad.len() - 3);
    let reply = answer(&bad, &zone, Transport::Udp).expect("FORMERR");
    let parsed = Packet::parse(&reply).expect("parses");
    assert_eq!((parsed.id(), parsed.rcode()), (0xbeef, RCODE::FormatError));
    let response =
        answer(&query("x.elb.localhost", TYPE::A), &zone, Transport::Udp).expect("an answer");
    assert_eq!(answer(&response, &zone, Transport::Udp), None);
    assert_eq!(answer(&[0x12], &zone, Transport::Udp), None);
}

#[test]
fn the_flags_check_the_address_and_the_domain() {
    use crate::cli::{parse, Command};
    let run = |extra: &[&str]| {
        let mut args = vec!["-l", "http:80"];
        args.extend_from_slice(extra);
        parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    };
    let Ok(Command::Run(config)) = run(&["--dns", "127.0.0.1:5353", "--dns-domain", "LB.Example."])
    else {
        panic!("refused");
    };
    assert_eq!(
        config.runtime.dns,
        Some("127.0.0.1:5353".parse().expect("addr"))
    );
    assert_eq!(config.runtime.dns_domain, "lb.example");
    for bad in [
        &["--dns", "5353"][..],
        &["--dns", "localhost:53"],
        &["--dns-domain", "a..b"],
        &["--dns-domain", "-a.b"],
        &["--dns-domain", "a_b.c"],
        &["--dns-domain", ""],
    ] {
        let Err(e) = run(bad) else {
            panic!("{bad:?} accepted")
        };
        assert!(e.0.contains(bad[0].trim_start_matches('-')), "{bad:?}: {e}");
    }
}

#[test]
fn each_node_answers_with_its_own_pool_address_for_each_load_balancer() {
    let mut n1 = node("n1", "zone-a", "127.0.1.1");
    let mut n2 = node("n2", "zone-a", "127.0.2.1");
    let n3 = node("n3", "zone-a", "127.0.3.1");
    let mut n4 = node("n4", "zone-a", "127.0.4.1");
    // This node's own map is in the model; another's in its record.
    n1.addresses = Some([("web".to_string(), ip("10.0.1.5"))].into());
    n2.addresses = Some(
        [
            ("web".to_string(), ip("10.0.2.7")),
            ("api".to_string(), ip("10.0.2.8")),
        ]
        .into(),
    );
    // A node with a pool but no address for "api": it does not serve it.
    n4.addresses = Some([("web".to_string(), ip("10.0.4.1"))].into());
    let lbs = [
        lb("web", &["zone-a"], Some("10.0.1.1")),
        lb("api", &["zone-a"], Some("10.0.1.2")),
    ];
    let zone = DnsZone::build(
        "elb.localhost",
        &lbs,
        &[n1, n2, n3, n4],
        "n1",
        ip("127.0.1.1"),
    );
    let (_, ips, _) = addresses(&zone, "web.elb.localhost", Transport::Udp);
    let want = ["10.0.1.1", "10.0.2.7", "10.0.4.1", "127.0.3.1"].map(ip);
    assert_eq!(ips, want);
    let (_, ips, _) = addresses(&zone, "api.elb.localhost", Transport::Udp);
    assert_eq!(ips, ["10.0.1.2", "10.0.2.8", "127.0.3.1"].map(ip));
}

#[test]
fn every_node_answering_dns_is_a_name_server_with_glue() {
    let apex = |zone: &DnsZone| {
        let bytes = answer(&query("elb.localhost", TYPE::NS), zone, Transport::Udp).expect("NS");
        let reply = Packet::parse(&bytes).expect("parses");
        let ns: Vec<String> = reply
            .answers
            .iter()
            .filter_map(|r| match &r.rdata {
                simple_dns::rdata::RData::NS(ns) => Some(ns.0.to_string()),
                _ => None,
            })
            .collect();
        let glue: Vec<(String, IpAddr)> = reply
            .additional_records
            .iter()
            .filter_map(|r| match &r.rdata {
                simple_dns::rdata::RData::A(a) => {
                    Some((r.name.to_string(), IpAddr::V4(a.address.into())))
                }
                _ => None,
            })
            .collect();
        (ns, glue)
    };
    // Alone (no --cluster): ns1, as before.
    let zone = DnsZone::build(
        "elb.localhost",
        &[],
        &[node("x", "", "127.0.0.1")],
        "x",
        ip("127.0.0.1"),
    );
    assert_eq!(apex(&zone).0, ["ns1.ns.elb.localhost"]);
    let mut n1 = node("n1", "zone-a", "127.0.1.1");
    let mut n2 = node("N_2", "zone-b", "127.0.2.1");
    let n3 = node("n3", "zone-c", "127.0.3.1");
    n1.dns = Some(ip("127.0.1.53"));
    n2.dns = Some(ip("127.0.2.53"));
    let zone = DnsZone::build("elb.localhost", &[], &[n1, n2, n3], "N_2", ip("127.0.2.53"));
    let (ns, glue) = apex(&zone);
    assert_eq!(ns, ["n-2.ns.elb.localhost", "n1.ns.elb.localhost"]);
    assert_eq!(
        glue,
        [
            ("n-2.ns.elb.localhost".to_string(), ip("127.0.2.53")),
            ("n1.ns.elb.localhost".to_string(), ip("127.0.1.53")),
        ]
    );
    assert_eq!(zone.ns_host, "n-2.ns.elb.localhost");
    // A node whose own record is not in its list still names itself.
    let mut other = node("n1", "zone-a", "127.0.1.1");
    other.dns = Some(ip("127.0.1.53"));
    let zone = DnsZone::build("elb.localhost", &[], &[other], "n9", ip("127.0.9.53"));
    assert_eq!(
        apex(&zone).0,
        ["n9.ns.elb.localhost", "n1.ns.elb.localhost"]
    );
}
