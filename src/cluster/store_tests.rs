//! What the etcd store makes of watch reports, without an etcd: its own writes coming
//! back are skipped, older news is skipped, a resync deletes what is gone.

use super::*;
use crate::cluster::etcd::WatchEvent;
use std::time::Duration;

fn store() -> EtcdStore {
    let etcd = Etcd::new(
        &["http://127.0.0.1:1".to_string()],
        Duration::from_millis(10),
    )
    .unwrap();
    EtcdStore::new(etcd, "/clb/", &["http://127.0.0.1:1".to_string()])
}

fn kv(name: &str, scheme: &str, rev: i64) -> Kv {
    let value = format!("clb-state 1\nlb {name} 0 {scheme}\nzone zone-a\nend\n");
    Kv {
        key: format!("/clb/lb/{name}").into_bytes(),
        value: value.into_bytes(),
        mod_revision: rev,
        lease: 0,
    }
}

fn event(kind: WatchKind, kv: Kv) -> Remote {
    Remote::Events(vec![WatchEvent { kind, kv }])
}

fn names(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::Put(lb) => format!("put {} {}", lb.name, lb.scheme),
            Change::Delete(name) => format!("delete {name}"),
        })
        .collect()
}

#[test]
fn follows_each_revision_once() {
    let mut s = store();
    assert_eq!(
        names(&s.follow(event(WatchKind::Put, kv("web", "internal", 5)))),
        ["put web internal"]
    );
    // The same revision again (this node's own write, or a resync that overlaps): nothing.
    assert!(s
        .follow(event(WatchKind::Put, kv("web", "internal", 5)))
        .is_empty());
    assert!(s
        .follow(event(WatchKind::Put, kv("web", "internet-facing", 4)))
        .is_empty());
    assert_eq!(
        names(&s.follow(event(WatchKind::Put, kv("web", "internet-facing", 7)))),
        ["put web internet-facing"]
    );
    // Keys that are not load balancers, and records that do not decode, change nothing.
    let mut other = kv("x", "internal", 8);
    other.key = b"/clb/lbx".to_vec();
    assert!(s.follow(event(WatchKind::Put, other)).is_empty());
    let mut bad = kv("bad", "internal", 9);
    bad.value = b"not a record".to_vec();
    assert!(s.follow(event(WatchKind::Put, bad)).is_empty());
    let mut gone = kv("web", "", 10);
    gone.value.clear();
    assert_eq!(
        names(&s.follow(event(WatchKind::Delete, gone.clone()))),
        ["delete web"]
    );
    assert!(
        s.follow(event(WatchKind::Delete, gone)).is_empty(),
        "deleting twice"
    );
}

#[test]
fn a_resync_puts_what_is_new_and_deletes_what_is_gone() {
    let mut s = store();
    s.follow(event(WatchKind::Put, kv("a", "internal", 3)));
    s.follow(event(WatchKind::Put, kv("b", "internal", 4)));
    let changes = s.follow(Remote::Resync {
        kvs: vec![kv("b", "internal", 4), kv("c", "internal", 9)],
        revision: 12,
    });
    assert_eq!(names(&changes), ["put c internal", "delete a"]);
    assert_eq!(s.loaded_at(), 12);
}

#[test]
fn the_stored_record_leaves_the_address_out() {
    let (mut lb, _) = decode("web", &kv("web", "internal", 1).value).unwrap();
    lb.address = Some("127.0.3.1".parse().unwrap());
    assert!(!record(&lb).contains("127.0.3.1"));
    assert_eq!(
        decode("other", &kv("web", "internal", 1).value).map(|_| ()),
        Err("expected one record for load balancer other".into())
    );
}

#[test]
fn a_forgotten_load_balancer_is_neither_written_nor_deleted_but_followed() {
    let mut s = store();
    let (ours, _) = decode("web", &kv("web", "internal", 1).value).unwrap();
    s.follow(event(WatchKind::Put, kv("web", "internal", 3)));
    s.follow(event(WatchKind::Put, kv("new", "internal", 4)));
    // This node could not run version 3 of web nor "new"; it keeps its own web copy.
    s.forget("web", Some(&ours));
    s.forget("new", None);
    // Its other writes leave both alone (this etcd is unreachable: a write would fail).
    assert_eq!(s.commit(std::slice::from_ref(&ours)), Ok(()));
    // Changing its stale copy is a write guarded by a revision no key has.
    let mut changed = ours.clone();
    changed.scheme = "internet-facing".into();
    assert!(matches!(
        s.commit(&[changed]),
        Err(StoreError::Unavailable(_))
    ));
    // The next version from the watch is taken.
    assert_eq!(
        names(&s.follow(event(WatchKind::Put, kv("web", "internal", 5)))),
        ["put web internal"]
    );
}
