//! The etcd client (src/cluster/etcd.rs) against a real etcd 3.4: reads and writes,
//! guarded transactions, watches (including one behind compaction), leases, and what
//! the client says while etcd is down and after it returns.

mod common;

use clb::cluster::etcd::{Etcd, EtcdError, WatchEvent, WatchKind};
use common::etcd::EtcdServer;
use std::time::{Duration, Instant};

/// Reads watch batches until `want` events came or 10 s passed.
fn collect(watch: &mut clb::cluster::etcd::Watch, want: usize) -> Vec<WatchEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        got.extend(watch.next().expect("watch batch"));
    }
    got
}

#[test]
fn put_get_range_delete() {
    let server = EtcdServer::start();
    let etcd = server.client();
    let r1 = etcd.put(b"/t/lb/a", b"one", 0).unwrap();
    let r2 = etcd.put(b"/t/lb/b", &[0, 255, 10], 0).unwrap();
    etcd.put(b"/t0", b"outside the prefix", 0).unwrap();
    assert!(r2 > r1);
    let (kvs, revision) = etcd.range_prefix(b"/t/").unwrap();
    assert_eq!(revision, r2 + 1);
    let keys: Vec<&[u8]> = kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, [&b"/t/lb/a"[..], &b"/t/lb/b"[..]]);
    assert_eq!(
        (kvs[1].value.as_slice(), kvs[1].mod_revision),
        (&[0u8, 255, 10][..], r2)
    );
    let (one, _) = etcd.get(b"/t/lb/a").unwrap();
    assert_eq!(one.map(|kv| kv.value), Some(b"one".to_vec()));
    assert_eq!(etcd.get(b"/t/lb/none").unwrap().0, None);
    let r3 = etcd.delete(b"/t/lb/a").unwrap();
    assert!(r3 > revision);
    assert_eq!(etcd.range_prefix(b"/t/").unwrap().0.len(), 1);
    etcd.delete(b"/t/lb/a").unwrap(); // absent: no error
}

#[test]
fn txn_guards_by_mod_revision() {
    let server = EtcdServer::start();
    let etcd = server.client();
    let k = b"/t/sticky-key".to_vec();
    // Create if absent: the first wins, the second sees a conflict and keeps the first value.
    let created = etcd
        .txn(&[(k.clone(), 0)], &[(k.clone(), b"first".to_vec())], &[])
        .unwrap();
    assert_eq!(
        etcd.txn(&[(k.clone(), 0)], &[(k.clone(), b"second".to_vec())], &[]),
        Err(EtcdError::Conflict)
    );
    assert_eq!(
        etcd.get(&k)
            .unwrap()
            .0
            .map(|kv| (kv.value, kv.mod_revision)),
        Some((b"first".to_vec(), created))
    );
    // A writer that read revision `created` wins once; a second writer with the same stale read loses.
    etcd.put(b"/t/other", b"x", 0).unwrap();
    let next = etcd
        .txn(
            &[(k.clone(), created)],
            &[(k.clone(), b"a".to_vec())],
            &[b"/t/other".to_vec()],
        )
        .unwrap();
    assert_eq!(
        etcd.txn(&[(k.clone(), created)], &[(k.clone(), b"b".to_vec())], &[]),
        Err(EtcdError::Conflict)
    );
    assert_eq!(
        etcd.get(&k)
            .unwrap()
            .0
            .map(|kv| (kv.value, kv.mod_revision)),
        Some((b"a".to_vec(), next))
    );
    assert_eq!(
        etcd.get(b"/t/other").unwrap().0,
        None,
        "the delete went with the put"
    );
}

#[test]
fn watch_sees_puts_and_deletes_in_order() {
    let server = EtcdServer::start();
    let etcd = server.client();
    let (_, start) = etcd.range_prefix(b"/w/").unwrap();
    let mut watch = etcd.watch(b"/w/", start + 1).unwrap();
    let writer = server.client();
    let r1 = writer.put(b"/w/a", b"1", 0).unwrap();
    writer.put(b"/x", b"not watched", 0).unwrap();
    let r2 = writer.delete(b"/w/a").unwrap();
    let got = collect(&mut watch, 2);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (
            got[0].kind,
            got[0].kv.key.as_slice(),
            got[0].kv.value.as_slice()
        ),
        (WatchKind::Put, &b"/w/a"[..], &b"1"[..])
    );
    assert_eq!(
        (got[0].kv.mod_revision, got[1].kind, got[1].kv.mod_revision),
        (r1, WatchKind::Delete, r2)
    );
    // Idle: an empty batch within the client's timeout, and the stream still works after it.
    let idle = Instant::now();
    assert_eq!(watch.next().unwrap(), vec![]);
    assert!(idle.elapsed() < Duration::from_secs(10));
    writer.put(b"/w/b", b"2", 0).unwrap();
    assert_eq!(collect(&mut watch, 1).len(), 1);
}

#[test]
fn watch_behind_compaction_says_compacted() {
    let server = EtcdServer::start();
    let etcd = server.client();
    let first = etcd.put(b"/c/k", b"0", 0).unwrap();
    let mut last = first;
    for i in 1..5 {
        last = etcd.put(b"/c/k", i.to_string().as_bytes(), 0).unwrap();
    }
    server.etcdctl(&["compact", &last.to_string()]);
    let outcome = etcd.watch(b"/c/", first).and_then(|mut w| loop {
        let batch = w.next()?;
        if !batch.is_empty() {
            break Ok(batch);
        }
    });
    assert_eq!(
        outcome.map(|_| ()),
        Err(EtcdError::Compacted {
            compact_revision: last
        })
    );
}

#[test]
fn leases_keep_keys_alive_and_revoke_them() {
    let server = EtcdServer::start();
    let etcd = server.client();
    let lease = etcd.lease_grant(30).unwrap();
    etcd.put(b"/n/node1", b"here", lease).unwrap();
    assert_eq!(
        etcd.get(b"/n/node1").unwrap().0.map(|kv| kv.lease),
        Some(lease)
    );
    let ttl = etcd.lease_keepalive(lease).unwrap();
    assert!(matches!(ttl, Some(t) if t > 0 && t <= 30), "{ttl:?}");
    etcd.lease_revoke(lease).unwrap();
    assert_eq!(
        etcd.get(b"/n/node1").unwrap().0,
        None,
        "the key went with its lease"
    );
    assert_eq!(etcd.lease_keepalive(lease).unwrap(), None);
    etcd.lease_revoke(lease).unwrap(); // already gone: no error
}

#[test]
fn etcd_down_is_unreachable_then_back() {
    let mut server = EtcdServer::start();
    // A dead endpoint first: the client goes on to the live one.
    let dead = format!("http://127.0.0.1:{}", common::free_port("127.0.0.1"));
    let etcd = Etcd::new(&[dead, server.endpoint()], Duration::from_secs(1)).unwrap();
    etcd.put(b"/d/k", b"v", 0).unwrap();
    let (_, revision) = etcd.range_prefix(b"/d/").unwrap();
    let mut watch = etcd.watch(b"/d/", revision + 1).unwrap();
    server.stop();
    assert!(matches!(
        etcd.put(b"/d/k", b"w", 0),
        Err(EtcdError::Unreachable(_))
    ));
    assert!(matches!(
        etcd.range_prefix(b"/d/"),
        Err(EtcdError::Unreachable(_))
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let broken = loop {
        match watch.next() {
            Ok(batch) if batch.is_empty() && Instant::now() < deadline => continue,
            other => break other,
        }
    };
    assert!(
        matches!(broken, Err(EtcdError::Unreachable(_))),
        "{broken:?}"
    );
    server.resume();
    etcd.put(b"/d/k", b"back", 0).unwrap();
    assert_eq!(
        etcd.get(b"/d/k").unwrap().0.map(|kv| kv.value),
        Some(b"back".to_vec())
    );
}

/// Starts a watch thread on `prefix` (from revision `from`, None: read it all first):
/// each call returns its next report, waiting up to 20 s.
fn follow_reports(
    etcd: Etcd,
    prefix: &[u8],
    from: Option<i64>,
) -> impl Fn() -> clb::cluster::follow::Remote {
    let (to_test, reports) = std::sync::mpsc::channel();
    clb::cluster::follow::spawn(
        etcd,
        prefix.to_vec(),
        from,
        "a test prefix",
        || false,
        move |r| to_test.send(r).is_ok(),
    )
    .expect("the watch thread starts");
    move || {
        reports
            .recv_timeout(Duration::from_secs(20))
            .expect("a report from the watch thread")
    }
}

#[test]
fn follow_resyncs_after_compaction_and_after_an_outage() {
    use clb::cluster::follow::Remote;
    let mut server = EtcdServer::start();
    let etcd = server.client();
    let first = etcd.put(b"/f/lb/a", b"1", 0).unwrap();
    let last = etcd.put(b"/f/lb/a", b"2", 0).unwrap();
    server.etcdctl(&["compact", &last.to_string()]);
    let next = follow_reports(server.client(), b"/f/lb/", Some(first));
    // Behind compaction: the whole prefix, at a revision from which it watches on.
    match next() {
        Remote::Resync { kvs, revision } => {
            assert_eq!(
                (kvs.len(), kvs[0].value.as_slice(), revision),
                (1, &b"2"[..], last)
            );
        }
        other => panic!("{other:?}"),
    }
    let put = etcd.put(b"/f/lb/b", b"3", 0).unwrap();
    assert!(matches!(next(), Remote::Events(e) if e[0].kv.mod_revision == put));
    // An outage: after etcd returns, a full resync that includes what changed meanwhile.
    server.stop();
    std::thread::sleep(Duration::from_millis(300));
    server.resume();
    etcd.delete(b"/f/lb/a").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut told_unreachable = false;
    loop {
        match next() {
            Remote::Unreachable(_) => told_unreachable = true,
            Remote::Resync { kvs, .. } => {
                let keys: Vec<&[u8]> = kvs.iter().map(|kv| kv.key.as_slice()).collect();
                if keys == [&b"/f/lb/b"[..]] {
                    break;
                }
            }
            // The delete may come as an event after a resync that preceded it.
            Remote::Events(e) if e.iter().any(|e| e.kind == WatchKind::Delete) => break,
            Remote::Events(_) => {}
        }
        assert!(Instant::now() < deadline, "no resync after etcd returned");
    }
    assert!(told_unreachable, "the outage was not reported");
}

/// A node's health watch starts without a revision when etcd went away while the node
/// started (runtime goes on without other nodes' views): it reads the whole prefix once
/// etcd answers, then watches on from there.
#[test]
fn follow_without_a_revision_reads_everything_once_etcd_answers() {
    use clb::cluster::follow::Remote;
    let mut server = EtcdServer::start();
    let etcd = server.client();
    let put = etcd.put(b"/g/health/n1", b"InService", 0).unwrap();
    server.stop();
    let next = follow_reports(server.client(), b"/g/health/", None);
    assert!(matches!(next(), Remote::Unreachable(_)));
    server.resume();
    match next() {
        Remote::Resync { kvs, revision } => {
            assert_eq!((kvs.len(), kvs[0].value.as_slice()), (1, &b"InService"[..]));
            assert!(revision >= put);
        }
        other => panic!("{other:?}"),
    }
    let later = etcd.put(b"/g/health/n2", b"OutOfService", 0).unwrap();
    assert!(matches!(next(), Remote::Events(e) if e[0].kv.mod_revision == later));
}
