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
    /// This node's name server host name (`ns1.ns.<domain>` alone, `<node>.ns.<domain>`
    /// in a fleet): two labels below the apex, so no load balancer name (one label) can
    /// take it. The SOA's primary.
    pub ns_host: String,
    /// Every name server of the zone (the apex's NS records): one per live node that
    /// answers DNS, this node's first.
    pub ns_hosts: Vec<String>,
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
    ///
    /// Each node is listed with its own address for the load balancer: this node's from
    /// `lbs`, another's from the map it publishes (`NodeInfo::addresses`); a node with a
    /// pool but no address for it (it could not take the load balancer, or has not yet)
    /// is left out; a node without a pool is listed with its `--node-address`.
    ///
    /// Name servers: every node that publishes a DNS address (`NodeInfo::dns`, `--dns`
    /// with `--cluster`) is one, `<node>.ns.<domain>`; without any (a single node), this
    /// node is `ns1.ns.<domain>`.
    pub fn build(
        domain: &str,
        lbs: &[LbState],
        nodes: &[NodeInfo],
        this_node: &str,
        ns_address: IpAddr,
    ) -> DnsZone {
        let mut names: HashMap<String, Vec<IpAddr>> = HashMap::with_capacity(lbs.len() + 1);
        let (ns_host, ns_hosts) = name_servers(domain, nodes, this_node, ns_address, &mut names);
        // In creation order: of two names differing only in case, the first created
        // keeps the DNS name (README "DNS").
        for lb in lbs {
            let mut addresses: Vec<IpAddr> = nodes
                .iter()
                .filter(|n| n.zone.is_empty() || lb.zones.contains(&n.zone))
                .filter_map(|n| match (&lb.address, &n.addresses) {
                    (Some(own), _) if n.name == this_node => Some(*own),
                    (_, Some(theirs)) => theirs.get(&lb.name).copied(),
                    (_, None) => Some(n.address),
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
            ns_hosts,
            serial,
            names,
        }
    }
}

/// The name servers' host names, this node's first, their addresses put in `names` (the
/// glue): `(this node's, all)`.
fn name_servers(
    domain: &str,
    nodes: &[NodeInfo],
    this_node: &str,
    ns_address: IpAddr,
    names: &mut HashMap<String, Vec<IpAddr>>,
) -> (String, Vec<String>) {
    let mut servers: Vec<(String, IpAddr)> = nodes
        .iter()
        .filter_map(|n| Some((ns_label(&n.name), n.dns?, n.name == this_node)))
        .map(|(label, ip, own)| (format!("{label}.ns.{domain}"), ip, own))
        .fold(Vec::new(), |mut v, (host, ip, own)| {
            if own {
                v.insert(0, (host, ip));
            } else {
                v.push((host, ip));
            }
            v
        });
    let own = format!("{}.ns.{domain}", ns_label(this_node));
    if servers.is_empty() {
        servers.push((format!("ns1.ns.{domain}"), ns_address));
    } else if servers[0].0 != own {
        // This node's record is not (yet, or no longer) in the list it has: it answers
        // all the same, so it names itself.
        servers.insert(0, (own, ns_address));
    }
    let mut hosts = Vec::with_capacity(servers.len());
    for (host, ip) in servers {
        let glue = names.entry(host.clone()).or_default();
        if !glue.contains(&ip) {
            glue.push(ip);
        }
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    (hosts[0].clone(), hosts)
}

/// A node name as a DNS label: lower-case, every byte other than a-z, 0-9 and '-'
/// replaced by '-' (node names may hold '_' and '.'), and not starting or ending with
/// '-'.
fn ns_label(node: &str) -> String {
    let label: String = node
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() {
        "node".to_string()
    } else {
        label.to_string()
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
