//! The DNS zone as one immutable snapshot: every name the server answers for and its
//! addresses, built by the control thread from the model and the live node list
//! whenever either changes, and read by the server threads without locking the model.

use crate::config::node::NodeInfo;
use crate::control::model::LbState;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// ELB's TTL for a load balancer's records: clients re-resolve within a minute of a
/// node joining or leaving.
pub const TTL: u32 = 60;
/// The default `--dns-domain`: RFC 6761 reserves `.localhost`, so it never leaks to
/// the public DNS.
pub const DEFAULT_DOMAIN: &str = "elb.localhost";

/// What the server answers from. Names are lower-case and without the trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsZone {
    /// The apex, e.g. `elb.localhost`.
    pub domain: String,
    /// The name server's host name (`ns1.ns.<domain>`): two labels below the apex, so
    /// no load balancer name (one label) can take it.
    pub ns_host: String,
    /// `hostmaster.<domain>` in the SOA record.
    pub hostmaster: String,
    /// SOA serial: seconds since 1970 when the snapshot was built.
    pub serial: u32,
    /// Owner name → addresses (A and AAAA), the name server's own name included.
    pub names: HashMap<String, Vec<IpAddr>>,
}

/// The name a load balancer answers to: `name.<domain>`, lower-cased (DNS names are
/// case-insensitive).
pub fn lb_name(domain: &str, lb: &str) -> String {
    format!("{}.{}", lb.to_ascii_lowercase(), domain)
}

/// `--dns-domain`'s rules: one to 127 host-name labels (letters, digits, '-') separated by
/// dots, at most 200 characters so every load balancer name fits under it. Returns the
/// domain lower-cased without a trailing dot.
pub fn parse_domain(text: &str) -> Result<String, String> {
    let domain = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if domain.is_empty() || domain.len() > 200 {
        return Err("must be a domain name of 1 to 200 characters".into());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !domain.split('.').all(label_ok) {
        return Err(
            "labels must be 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'".into(),
        );
    }
    Ok(domain)
}

impl DnsZone {
    /// The snapshot for `lbs` served by the live `nodes`. `this_node` names the node
    /// whose per-load-balancer pool addresses are in `lbs` (`LbState::address`);
    /// `ns_address` is where this node's DNS server is reached (the glue record).
    ///
    /// A node serves a load balancer when its zone is one the load balancer enables (a
    /// node without a zone, a single node without `--node-zone`, serves every zone). As
    /// ELB, a load balancer none of whose zones has a live node has a name but no
    /// addresses (NODATA), rather than sending clients to nodes of other zones.
    pub fn build(
        domain: &str,
        lbs: &[LbState],
        nodes: &[NodeInfo],
        this_node: &str,
        ns_address: IpAddr,
    ) -> DnsZone {
        let mut names: HashMap<String, Vec<IpAddr>> = HashMap::with_capacity(lbs.len() + 1);
        let ns_host = format!("ns1.ns.{domain}");
        names.insert(ns_host.clone(), vec![ns_address]);
        // In creation order: of two names differing only in case, the first created
        // keeps the DNS name (README "DNS").
        for lb in lbs {
            let mut addresses: Vec<IpAddr> = nodes
                .iter()
                .filter(|n| n.zone.is_empty() || lb.zones.contains(&n.zone))
                .map(|n| match lb.address {
                    Some(own) if n.name == this_node => own,
                    _ => n.address,
                })
                .collect();
            addresses.sort();
            addresses.dedup();
            names.entry(lb_name(domain, &lb.name)).or_insert(addresses);
        }
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        DnsZone {
            domain: domain.to_string(),
            hostmaster: format!("hostmaster.{domain}"),
            ns_host,
            serial,
            names,
        }
    }
}

/// Where this node is reached when `--node-address` does not say: `--bind` when it names
/// one address, else loopback (`--node-address`'s default).
pub fn this_node_address(bind: IpAddr) -> IpAddr {
    match bind {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        specific => specific,
    }
}
