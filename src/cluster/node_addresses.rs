//! Each node's own address for each load balancer (`--address-pool` with `--cluster`).
//!
//! The shared model holds no address: a pool is one node's, so every node allocates its
//! load balancers' addresses from its own pool. The node publishes the map in its
//! membership record (`"lbs"`, bound to its lease: the DNS answers list only live nodes'
//! addresses) and keeps a copy under `<prefix>addresses/<node>`, not bound to a lease, so
//! that a node restarted after any outage takes the same address for each load balancer
//! again (the way the state file keeps it on a single node).

use super::etcd::{Etcd, EtcdError};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

pub fn key(prefix: &str, node: &str) -> Vec<u8> {
    format!("{prefix}addresses/{node}").into_bytes()
}

/// `{"web":"127.0.1.10",...}`
pub fn to_json(addresses: &BTreeMap<String, IpAddr>) -> Value {
    Value::Object(
        addresses
            .iter()
            .map(|(lb, ip)| (lb.clone(), Value::String(ip.to_string())))
            .collect::<Map<String, Value>>(),
    )
}

/// The map back; None when `value` is not an object (no pool). Entries that are not an
/// address are skipped: a damaged entry costs that load balancer this node's record.
pub fn from_json(value: &Value) -> Option<BTreeMap<String, IpAddr>> {
    let object = value.as_object()?;
    Some(
        object
            .iter()
            .filter_map(|(lb, ip)| Some((lb.clone(), ip.as_str()?.parse().ok()?)))
            .collect(),
    )
}

pub fn save(
    etcd: &Etcd,
    prefix: &str,
    node: &str,
    addresses: &BTreeMap<String, IpAddr>,
) -> Result<(), EtcdError> {
    let value = to_json(addresses).to_string();
    etcd.put(&key(prefix, node), value.as_bytes(), 0).map(drop)
}

/// What this node had before it restarted (empty at its first start, or when the copy
/// is not readable: the node then allocates afresh, which is logged).
pub fn load(etcd: &Etcd, prefix: &str, node: &str) -> Result<HashMap<String, IpAddr>, EtcdError> {
    let (kv, _) = etcd.get(&key(prefix, node))?;
    let Some(kv) = kv else {
        return Ok(HashMap::new());
    };
    let parsed = serde_json::from_slice::<Value>(&kv.value)
        .ok()
        .and_then(|v| from_json(&v));
    match parsed {
        Some(map) => Ok(map.into_iter().collect()),
        None => {
            log::warn!(
                "cluster: {}addresses/{node} is not an address map; load balancers take new addresses",
                prefix
            );
            Ok(HashMap::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_round_trips_and_bad_entries_are_skipped() {
        let mut map = BTreeMap::new();
        map.insert("web".to_string(), "127.0.1.10".parse().unwrap());
        map.insert("api".to_string(), "::1".parse().unwrap());
        assert_eq!(from_json(&to_json(&map)), Some(map.clone()));
        let bad: Value = serde_json::json!({"web": "127.0.1.10", "x": 3, "y": "nope"});
        let back = from_json(&bad).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(from_json(&Value::Null), None);
        assert_eq!(key("/clb/", "n1"), b"/clb/addresses/n1");
    }
}
