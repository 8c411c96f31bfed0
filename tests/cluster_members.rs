//! Membership (src/cluster/members.rs) against a real etcd 3.4: a node's key bound to
//! its lease, a second node with the same name refused, leaving (revoke) and crashing
//! (lease expiry) measured, the live list followed by every node, and membership across
//! etcd outages (one member restarted beyond the TTL; one of three members stopped).

mod common;

use clb::cluster::etcd::Etcd;
use clb::cluster::members::{node_key, JoinError, Membership};
use clb::config::node::NodeInfo;
use common::etcd::{EtcdCluster, EtcdServer};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const PREFIX: &str = "/t/";
const TTL: Duration = Duration::from_secs(2);
/// Lease expiry is checked by etcd's leader about every 500 ms; the machine is loaded.
const SLACK: Duration = Duration::from_secs(4);

fn node(name: &str, zone: &str, address: &str) -> NodeInfo {
    NodeInfo::this_node(name, zone, address.parse().unwrap())
}

fn join(endpoints: &[String], me: NodeInfo) -> (Membership, Receiver<Vec<NodeInfo>>) {
    let (tx, rx) = channel();
    let etcd = Etcd::new(endpoints, Duration::from_millis(500)).unwrap();
    let notify = Box::new(move |list: Vec<NodeInfo>| {
        let _ = tx.send(list);
    });
    let m = Membership::join(etcd, PREFIX, me, TTL, notify).expect("join");
    (m, rx)
}

/// Waits for a list whose names are `want`; how long it took.
fn wait_names(rx: &Receiver<Vec<NodeInfo>>, want: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < within {
        if let Ok(list) = rx.recv_timeout(Duration::from_millis(100)) {
            last = list.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
            if last == want {
                return start.elapsed();
            }
        }
    }
    panic!("node list {last:?}, want {want:?} within {within:?}");
}

/// Waits until `key` is gone from etcd; how long it took.
fn wait_gone(etcd: &Etcd, key: &[u8], within: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < within {
        if matches!(etcd.get(key), Ok((None, _))) {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{} still present after {within:?}",
        String::from_utf8_lossy(key)
    );
}

#[test]
fn register_refuse_duplicate_leave_and_crash() {
    let server = EtcdServer::start();
    let etcd = server.client();
    let eps = [server.endpoint()];
    let (n1, rx1) = join(&eps, node("n1", "zone-a", "127.0.1.1"));
    wait_names(&rx1, &["n1"], Duration::from_secs(5));
    let (kv, _) = etcd.get(&node_key(PREFIX, "n1")).unwrap();
    let kv = kv.expect("n1's key");
    assert_ne!(kv.lease, 0, "the key is bound to a lease");
    let record = String::from_utf8_lossy(&kv.value).into_owned();
    assert!(
        record.contains("\"zone\":\"zone-a\"") && record.contains("127.0.1.1"),
        "{record}"
    );

    // The same name while n1 lives: refused after waiting one TTL for it to go away.
    let dup = Membership::join(
        Etcd::new(&eps, Duration::from_millis(500)).unwrap(),
        PREFIX,
        node("n1", "zone-b", "127.0.9.1"),
        TTL,
        Box::new(|_| {}),
    );
    match dup {
        Err(e @ JoinError::NameTaken { .. }) => {
            assert!(e.to_string().contains("127.0.1.1"), "{e}")
        }
        other => panic!("duplicate accepted: {:?}", other.err()),
    }

    // Both see each other; n2 leaving (SIGTERM path) is gone at once.
    let (n2, rx2) = join(&eps, node("n2", "zone-b", "127.0.2.1"));
    wait_names(&rx1, &["n1", "n2"], Duration::from_secs(5));
    wait_names(&rx2, &["n1", "n2"], Duration::from_secs(5));
    n2.leave();
    let left = wait_gone(&etcd, &node_key(PREFIX, "n2"), Duration::from_secs(2));
    let seen = wait_names(&rx1, &["n1"], Duration::from_secs(2));
    eprintln!("leave: key gone after {left:?}, n1's list after {seen:?}");

    // n3 crashes (no revoke, as kill -9): gone within the TTL plus slack.
    let (n3, _rx3) = join(&eps, node("n3", "zone-c", "127.0.3.1"));
    wait_names(&rx1, &["n1", "n3"], Duration::from_secs(5));
    drop(n3);
    let crashed = wait_names(&rx1, &["n1"], TTL + SLACK);
    eprintln!("crash: n3 out of n1's list after {crashed:?} (TTL {TTL:?})");

    // n3 restarting with its name rejoins (its old key is gone or waited out).
    let (n3, _rx3) = join(&eps, node("n3", "zone-c", "127.0.3.1"));
    wait_names(&rx1, &["n1", "n3"], Duration::from_secs(5));
    // A crash then an immediate restart on the same address: the old key is taken over.
    drop(n3);
    let restart = Instant::now();
    let (n3, _rx3) = join(&eps, node("n3", "zone-c", "127.0.3.1"));
    let took = restart.elapsed();
    eprintln!("restart right after a crash, same address: joined after {took:?}");
    assert!(took < TTL, "taken over, not waited out");
    // On another address: the old key is waited out (the node moved), not refused.
    drop(n3);
    let moved = Instant::now();
    let (_n3, _rx3) = join(&eps, node("n3", "zone-c", "127.0.3.2"));
    let took = moved.elapsed();
    eprintln!("restart right after a crash, new address: joined after {took:?}");
    assert!(took <= TTL + SLACK);
    drop(n1);
}

#[test]
fn etcd_down_beyond_the_ttl_then_back_re_registers() {
    let mut server = EtcdServer::start();
    let eps = [server.endpoint()];
    let (n1, rx1) = join(&eps, node("n1", "zone-a", "127.0.1.1"));
    let (_n2, rx2) = join(&eps, node("n2", "zone-b", "127.0.2.1"));
    wait_names(&rx1, &["n1", "n2"], Duration::from_secs(5));
    wait_names(&rx2, &["n1", "n2"], Duration::from_secs(5));
    server.stop();
    // Down for twice the TTL: the nodes keep their last list (nothing is published).
    std::thread::sleep(TTL * 2);
    assert!(
        rx1.try_iter().all(|l| l.len() == 2),
        "the list held while etcd was down"
    );
    server.resume();
    let back = Instant::now();
    let etcd = server.client();
    let deadline = Duration::from_secs(15);
    while back.elapsed() < deadline {
        let (kvs, _) = etcd.range_prefix(b"/t/nodes/").unwrap_or_default();
        if kvs.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (kvs, _) = etcd.range_prefix(b"/t/nodes/").unwrap();
    assert_eq!(
        kvs.len(),
        2,
        "both nodes registered again without a restart"
    );
    eprintln!("etcd back: both keys present after {:?}", back.elapsed());
    // The list did not change, so nothing new is published; the watch follows again:
    // n1 leaving reaches n2.
    let seen = Instant::now();
    n1.leave();
    wait_names(&rx2, &["n2"], Duration::from_secs(10));
    eprintln!(
        "etcd back: n1 leaving reached n2 after {:?}",
        seen.elapsed()
    );

    // A lease lost while the node lives (expired during a partition; here revoked by
    // hand): the node registers again within a renewal period.
    let (kv, _) = etcd.get(&node_key(PREFIX, "n2")).unwrap();
    let lease = kv.expect("n2's key").lease;
    let lost = Instant::now();
    server.etcdctl(&["lease", "revoke", &format!("{lease:x}")]);
    let deadline = TTL + SLACK;
    while lost.elapsed() < deadline {
        if let Ok((Some(kv), _)) = etcd.get(&node_key(PREFIX, "n2")) {
            if kv.lease != lease {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (kv, _) = etcd.get(&node_key(PREFIX, "n2")).unwrap();
    assert!(
        kv.is_some_and(|kv| kv.lease != 0 && kv.lease != lease),
        "n2 registered again"
    );
    eprintln!("lease lost: n2 registered again after {:?}", lost.elapsed());
}

#[test]
fn one_of_three_etcd_members_down_membership_and_writes_go_on() {
    let mut cluster = EtcdCluster::start(3);
    let eps = cluster.endpoints();
    let (_n1, rx1) = join(&eps, node("n1", "zone-a", "127.0.1.1"));
    let (n2, _rx2) = join(&eps, node("n2", "zone-b", "127.0.2.1"));
    wait_names(&rx1, &["n1", "n2"], Duration::from_secs(5));
    cluster.members[0].stop();
    let etcd = cluster.client();
    let stopped = Instant::now();
    etcd.put(b"/t/probe", b"1", 0)
        .expect("a write with 2 of 3 members");
    eprintln!(
        "1 of 3 down: a write answered after {:?}",
        stopped.elapsed()
    );
    // Renewals go on through the other members past several TTLs...
    std::thread::sleep(TTL * 2);
    assert!(etcd.get(&node_key(PREFIX, "n1")).unwrap().0.is_some());
    // ...and the list still follows changes.
    n2.leave();
    wait_names(&rx1, &["n1"], Duration::from_secs(5));
    // Two of three down: no quorum, writes fail rather than being acknowledged.
    cluster.members[1].stop();
    let quick = Etcd::new(&eps, Duration::from_millis(700)).unwrap();
    assert!(
        quick.put(b"/t/probe", b"2", 0).is_err(),
        "no quorum, no write"
    );
    cluster.members[0].resume();
    assert!(etcd.put(b"/t/probe", b"3", 0).is_ok(), "quorum back");
}
