//! `--node NAME`, `--node-zone ZONE`, `--node-address ADDR`, `--node-ttl S`: who this
//! process is in a fleet of clb nodes (README "Running several nodes"). Without
//! `--cluster` they only name the fleet of one.

use super::{flag_error, number, CliError};
use crate::config::node::NodeFlags;
use crate::config::DEFAULT_ZONE;
use getopts::Matches;
use std::net::IpAddr;
use std::time::Duration;

/// Lease TTL range: etcd refuses leases under ~2 s (its minimum is 1.5 election
/// timeouts); over a minute a killed node would stay in DNS far longer than ELB's 60 s
/// record TTL.
pub(super) const NODE_TTL_RANGE: (u64, u64) = (2, 60);
pub(super) const DEFAULT_NODE_TTL: u64 = 10;
pub(super) const DEFAULT_NODE_NAME: &str = "node-1";

/// A node name is one etcd key segment and a DNS-safe label: 1 to 63 of
/// `A-Z a-z 0-9 - _ .`, not starting with `.` or `-`.
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with(['.', '-'])
}

/// A zone name: the same characters as a node name (ELB zones look like `us-east-1a`).
fn valid_zone(zone: &str) -> bool {
    valid_node_name(zone)
}

pub(super) fn node(m: &Matches, bind: IpAddr) -> Result<NodeFlags, CliError> {
    let address = match m.opt_str("node-address") {
        // Where clients reach this node: --bind when it names one address, else loopback
        // (as DNS answers for a single node).
        None => crate::dns::zone::this_node_address(bind),
        Some(text) => text
            .parse::<IpAddr>()
            .ok()
            .filter(|a| !a.is_unspecified() && !a.is_multicast())
            .ok_or_else(|| {
                flag_error(
                    "node-address",
                    &text,
                    "must be the IP address clients reach this node at, e.g. 127.0.1.1",
                )
            })?,
    };
    let name = m
        .opt_str("node")
        .unwrap_or_else(|| DEFAULT_NODE_NAME.to_owned());
    if !valid_node_name(&name) {
        return Err(flag_error(
            "node",
            &name,
            "must be 1 to 63 of A-Z a-z 0-9 '-' '_' '.', not starting with '.' or '-'",
        ));
    }
    let zone = m
        .opt_str("node-zone")
        .unwrap_or_else(|| DEFAULT_ZONE.to_owned());
    if !valid_zone(&zone) {
        return Err(flag_error(
            "node-zone",
            &zone,
            "must be 1 to 63 of A-Z a-z 0-9 '-' '_' '.', e.g. zone-a or us-east-1a",
        ));
    }
    let ttl = number(m, "node-ttl", NODE_TTL_RANGE, "a whole number of seconds")?
        .unwrap_or(DEFAULT_NODE_TTL);
    Ok(NodeFlags {
        name,
        zone,
        address,
        ttl: Duration::from_secs(ttl),
    })
}
