//! Unit tests of membership's record format and list keeping (the etcd side is in
//! tests/cluster_members.rs).

use super::*;
use std::time::UNIX_EPOCH;

#[test]
fn record_round_trips_and_rejects_junk() {
    let me = NodeInfo::this_node("n1", "zone-b", "127.0.2.1".parse().unwrap());
    let back = decode("n1", &encode(&me)).unwrap();
    assert_eq!((back.zone.as_str(), back.address), ("zone-b", me.address));
    assert_eq!(back.version, me.version);
    let secs = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(secs(back.started), secs(me.started));
    for junk in [
        &b""[..],
        b"{",
        b"[]",
        b"{\"zone\":\"a\"}",
        b"{\"zone\":1,\"address\":\"::1\"}",
        b"{\"zone\":\"a\",\"address\":\"nope\"}",
    ] {
        assert_eq!(
            decode("n1", junk),
            None,
            "{:?}",
            String::from_utf8_lossy(junk)
        );
    }
}

#[test]
fn events_keep_the_list() {
    let prefix = nodes_prefix("/clb/");
    let mut nodes = BTreeMap::new();
    let me = NodeInfo::this_node("n1", "zone-a", "127.0.1.1".parse().unwrap());
    let kv = |name: &str, value: Vec<u8>| Kv {
        key: node_key("/clb/", name),
        value,
        mod_revision: 1,
        lease: 7,
    };
    apply(&mut nodes, &prefix, WatchKind::Put, &kv("n1", encode(&me)));
    apply(
        &mut nodes,
        &prefix,
        WatchKind::Put,
        &kv("bad", b"x".to_vec()),
    );
    assert_eq!(nodes.keys().collect::<Vec<_>>(), ["n1"]);
    apply(
        &mut nodes,
        &prefix,
        WatchKind::Delete,
        &kv("n1", Vec::new()),
    );
    assert!(nodes.is_empty());
}
