//! A node's record under `<prefix>nodes/<name>`: small JSON an operator can read with
//! etcdctl (zone, address, version, start time, and the DNS server and pool addresses
//! when the node has them), written by membership and read by every node.

use crate::config::node::NodeInfo;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

/// `<prefix>nodes/`: where every node's key lives.
pub fn nodes_prefix(prefix: &str) -> Vec<u8> {
    format!("{prefix}nodes/").into_bytes()
}

pub fn node_key(prefix: &str, name: &str) -> Vec<u8> {
    format!("{prefix}nodes/{name}").into_bytes()
}

/// The record under a node's key: small JSON an operator can read with etcdctl.
pub fn encode(info: &NodeInfo) -> Vec<u8> {
    let started = info
        .started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut record = json!({
        "zone": info.zone,
        "address": info.address.to_string(),
        "version": info.version,
        "started": started,
    });
    // README "Running several nodes": the DNS name server and the pool addresses, only
    // when the node has them.
    if let Some(dns) = info.dns {
        record["dns"] = json!(dns.to_string());
    }
    if let Some(addresses) = &info.addresses {
        record["lbs"] = super::node_addresses::to_json(addresses);
    }
    record.to_string().into_bytes()
}

/// A record read back; None when it is not one (written by something else, or damaged).
pub fn decode(name: &str, value: &[u8]) -> Option<NodeInfo> {
    let v: Value = serde_json::from_slice(value).ok()?;
    let address: IpAddr = v["address"].as_str()?.parse().ok()?;
    Some(NodeInfo {
        name: name.to_string(),
        zone: v["zone"].as_str()?.to_string(),
        address,
        version: v["version"].as_str().unwrap_or("").to_string(),
        started: UNIX_EPOCH + Duration::from_secs(v["started"].as_u64().unwrap_or(0)),
        dns: v["dns"].as_str().and_then(|a| a.parse().ok()),
        addresses: super::node_addresses::from_json(&v["lbs"]),
    })
}
