//! A clb node as the fleet knows it: the interface between membership (who is alive,
//! `crate::cluster` with `--cluster`, or this process alone) and what answers for the
//! fleet (DNS records, DescribeLoadBalancers, the status page).
//!
//! A single node without `--cluster` is a fleet of one: [`NodeInfo::this_node`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

/// One live node: what it announces under its lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// `--node`: unique in the fleet.
    pub name: String,
    /// `--node-zone`: the availability zone the node serves; DNS answers for a load
    /// balancer list only nodes in its enabled zones.
    pub zone: String,
    /// `--node-address`: where clients reach this node (the address DNS answers with
    /// when the load balancer has no address of its own on this node).
    pub address: IpAddr,
    /// clb's version on that node.
    pub version: String,
    /// When the node started.
    pub started: SystemTime,
    /// `--dns` with `--cluster`: where the node's DNS server is reached (its NS record's
    /// glue). None: the node answers no DNS.
    pub dns: Option<IpAddr>,
    /// `--address-pool`: each load balancer's own address on this node (name → address).
    /// None: the node has no pool, and serves every load balancer on `address`.
    pub addresses: Option<BTreeMap<String, IpAddr>>,
}

impl NodeInfo {
    /// This process, named as the flags say (defaults for a single node).
    pub fn this_node(name: &str, zone: &str, address: IpAddr) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            zone: zone.to_string(),
            address,
            version: env!("CARGO_PKG_VERSION").to_string(),
            started: SystemTime::now(),
            dns: None,
            addresses: None,
        }
    }
}

/// Who this process is in the fleet, as the flags say (`--node`, `--node-zone`,
/// `--node-address`, `--node-ttl`); checked by `crate::cli`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFlags {
    pub name: String,
    pub zone: String,
    pub address: IpAddr,
    /// TTL of the etcd lease the node's membership key is bound to (`--cluster` only).
    pub ttl: std::time::Duration,
}

impl NodeFlags {
    /// This process as the fleet sees it, started now.
    pub fn info(&self) -> NodeInfo {
        NodeInfo::this_node(&self.name, &self.zone, self.address)
    }
}
