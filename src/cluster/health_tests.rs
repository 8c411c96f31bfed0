use super::*;
use crate::cluster::etcd::WatchEvent;
use crate::config::{Host, Instance, Listener, Protocol};
use std::sync::mpsc::{channel, Receiver};
use Health::{InService, Recovering, Registering, Unhealthy};

#[test]
fn the_merge_rule() {
    assert_eq!(merge([]), None);
    assert_eq!(merge([Registering, Registering]), None, "no view yet");
    assert_eq!(merge([InService, InService, Registering]), Some(InService));
    assert_eq!(merge([InService, Unhealthy, InService]), Some(Unhealthy));
    assert_eq!(merge([Recovering, InService]), Some(Recovering));
    // The most serious view wins, whatever the order: every node answers the same.
    assert_eq!(merge([Recovering, Unhealthy]), Some(Unhealthy));
    assert_eq!(merge([Unhealthy, Recovering]), Some(Unhealthy));
    assert_eq!(merge([Registering, Recovering]), Some(Recovering));
}

#[test]
fn records_and_keys_round_trip() {
    for h in [Registering, InService, Unhealthy, Recovering] {
        assert_eq!(decode(&encode(h)), Some(h));
    }
    let text = String::from_utf8(encode(Unhealthy)).unwrap();
    assert!(text.contains("\"state\":\"OutOfService\""), "{text}");
    assert!(text.contains("\"reason_code\":\"Instance\""), "{text}");
    assert_eq!(decode(b"{\"health\":\"sideways\"}"), None);
    assert_eq!(decode(b"\xff\xfe"), None);
    assert_eq!(decode(b"[]"), None);
    let prefix = health_prefix("/clb/");
    let key = health_key("/clb/", "n1", "web", "i-1");
    assert_eq!(key, b"/clb/health/n1/web/i-1");
    assert_eq!(split_key(&prefix, &key), Some(("n1", "web", "i-1")));
    assert_eq!(split_key(&prefix, b"/clb/health/n1/web"), None);
    assert_eq!(split_key(&prefix, b"/clb/health//web/i-1"), None);
    assert_eq!(split_key(&prefix, b"/clb/lb/web"), None);
}

fn kv(key: &str, value: &[u8], revision: i64) -> Kv {
    Kv {
        key: key.as_bytes().to_vec(),
        value: value.to_vec(),
        mod_revision: revision,
        lease: 7,
    }
}

fn put(key: &str, value: &[u8], revision: i64) -> WatchEvent {
    WatchEvent {
        kind: WatchKind::Put,
        kv: kv(key, value, revision),
    }
}

#[test]
fn views_follow_puts_deletes_resyncs_and_skip_damage() {
    let mut views = Views::new("/clb/");
    views.apply(Remote::Events(vec![
        put("/clb/health/n2/web/i-1", &encode(Unhealthy), 5),
        put("/clb/health/n3/web/i-1", &encode(InService), 6),
        put("/clb/health/n3/web/i-2", b"garbage", 7),
        put("/clb/health/n3/oops", &encode(InService), 8),
    ]));
    assert_eq!(views.get("n2", "web", "i-1"), Some(Unhealthy));
    assert_eq!(views.get("n3", "web", "i-1"), Some(InService));
    assert_eq!(
        views.get("n3", "web", "i-2"),
        None,
        "a damaged record is ignored"
    );
    assert_eq!(views.damaged.len(), 2);
    // The same damaged key again is not reported again.
    views.apply(Remote::Events(vec![put("/clb/health/n3/web/i-2", b"x", 9)]));
    assert_eq!(views.damaged.len(), 2);
    views.apply(Remote::Events(vec![WatchEvent {
        kind: WatchKind::Delete,
        kv: kv("/clb/health/n2/web/i-1", b"", 10),
    }]));
    assert_eq!(views.get("n2", "web", "i-1"), None);
    assert!(!views.nodes.contains_key("n2"), "an empty view is dropped");
    // etcd away: the last views stay.
    views.apply(Remote::Unreachable("down".into()));
    assert_eq!(views.get("n3", "web", "i-1"), Some(InService));
    // A resync is the whole truth: what it lacks is gone.
    views.apply(Remote::Resync {
        kvs: vec![kv("/clb/health/n4/web/i-1", &encode(Recovering), 11)],
        revision: 11,
    });
    assert_eq!(views.get("n3", "web", "i-1"), None);
    assert_eq!(views.get("n4", "web", "i-1"), Some(Recovering));
}

fn node(name: &str, zone: &str) -> NodeInfo {
    NodeInfo::this_node(name, zone, [127, 0, 0, 1].into())
}

fn model() -> Model {
    let instance = |id: &str| Instance {
        id: id.into(),
        host: Host::Ip([127, 0, 0, 2].into()),
        port: Some(8080),
        zone: "zone-a".into(),
    };
    let mut m = Model::new(vec![instance("i-1"), instance("i-2")]);
    let listener = Listener {
        protocol: Protocol::Http,
        port: 80,
        instance_protocol: Protocol::Http,
        instance_port: 8080,
        ssl_certificate_id: None,
    };
    m.create(
        "web",
        vec![listener],
        vec!["zone-a".into(), "zone-b".into()],
        "internet-facing",
        vec![],
    )
    .unwrap();
    m.register("web", &["i-1".into(), "i-2".into()]).unwrap();
    m
}

fn fleet() -> (FleetHealth, Arc<Mutex<Views>>, Receiver<Publish>) {
    let views = Arc::new(Mutex::new(Views::new("/clb/")));
    let (tx, rx) = channel();
    (FleetHealth::new("n1", views.clone(), tx), views, rx)
}

#[test]
fn merged_counts_live_serving_nodes_with_a_view() {
    let (fleet, views, _rx) = fleet();
    let m = model();
    let lb = m.lb("web").unwrap();
    views.lock().unwrap().apply(Remote::Events(vec![
        put("/clb/health/n2/web/i-1", &encode(Unhealthy), 5),
        put("/clb/health/n3/web/i-1", &encode(InService), 6),
        put("/clb/health/n4/web/i-1", &encode(Unhealthy), 7),
    ]));
    let all = [node("n1", "zone-a"), node("n2", "zone-b"), node("n3", "")];
    // n2 says out: out, in its words, on every node.
    assert_eq!(fleet.merged(lb, "i-1", InService, &all), Unhealthy);
    // n4 is not live (its keys wait for its lease to expire): not counted.
    let live = [node("n1", "zone-a"), node("n3", "zone-b")];
    assert_eq!(fleet.merged(lb, "i-1", InService, &live), InService);
    // A node whose zone the load balancer does not enable gets none of its clients.
    let other_zone = [node("n1", "zone-a"), node("n2", "zone-c")];
    assert_eq!(fleet.merged(lb, "i-1", InService, &other_zone), InService);
    // This node's own view is its board, not its echo in etcd.
    assert_eq!(fleet.merged(lb, "i-1", Recovering, &live), Recovering);
    // This node has no view yet: the others answer.
    assert_eq!(fleet.merged(lb, "i-1", Registering, &all), Unhealthy);
    // Nobody has a view: this node's own answer, as without --cluster.
    assert_eq!(fleet.merged(lb, "i-2", Registering, &all), Registering);
    // This node is not in an enabled zone and alone has a view: its own answer.
    let elsewhere = [node("n1", "zone-c")];
    assert_eq!(fleet.merged(lb, "i-1", Unhealthy, &elsewhere), Unhealthy);
}

#[test]
fn observe_sends_transitions_lease_changes_and_removals_only() {
    let (mut fleet, _views, rx) = fleet();
    let mut m = model();
    let t0 = Instant::now();
    let topology = Arc::new(m.topology().unwrap());
    fleet.observe(&m, &topology, 0, t0);
    assert!(rx.try_recv().is_err(), "nothing probed yet, no lease yet");
    let slot = |m: &Model, id: &str| {
        m.lb("web")
            .unwrap()
            .registered
            .iter()
            .find(|r| r.instance.id == id)
            .unwrap()
            .slot
    };
    m.health.set(slot(&m, "i-1"), InService);
    fleet.observe(&m, &topology, 42, t0 + SCAN_EVERY);
    let set = |id: &str, health| Publish::Set {
        lb: "web".into(),
        id: id.into(),
        health,
    };
    assert_eq!(
        rx.try_iter().collect::<Vec<_>>(),
        [Publish::Lease(42), set("i-1", Some(InService))]
    );
    // No change, no message (probes are not published, transitions are).
    fleet.observe(&m, &topology, 42, t0 + SCAN_EVERY * 2);
    assert!(rx.try_recv().is_err());
    // Too soon after the last scan: not scanned.
    m.health.set(slot(&m, "i-1"), Unhealthy);
    fleet.observe(
        &m,
        &topology,
        42,
        t0 + SCAN_EVERY * 2 + Duration::from_millis(1),
    );
    assert!(rx.try_recv().is_err());
    fleet.observe(&m, &topology, 42, t0 + SCAN_EVERY * 3);
    assert_eq!(
        rx.try_iter().collect::<Vec<_>>(),
        [set("i-1", Some(Unhealthy))]
    );
    // Deregistered (no draining): its key goes.
    m.deregister("web", &["i-1".into()], t0).unwrap();
    let topology = Arc::new(m.topology().unwrap());
    fleet.observe(&m, &topology, 42, t0 + SCAN_EVERY * 4);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [set("i-1", None)]);
    // Load balancer deleted: every key of it goes (i-2 never had one, nothing to send).
    m.health.set(slot(&m, "i-2"), Recovering);
    fleet.observe(&m, &topology, 43, t0 + SCAN_EVERY * 5);
    assert_eq!(
        rx.try_iter().collect::<Vec<_>>(),
        [Publish::Lease(43), set("i-2", Some(Recovering))]
    );
    m.delete("web");
    let topology = Arc::new(m.topology().unwrap());
    fleet.observe(&m, &topology, 43, t0 + SCAN_EVERY * 6);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [set("i-2", None)]);
}

/// The cost of one scan at the model's limits (20 load balancers × 1,000 instances):
/// `cargo test --release --lib scan_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn scan_cost() {
    let inventory: Vec<Instance> = (0..1000)
        .map(|i| Instance {
            id: format!("i-{i}"),
            host: Host::Ip([127, 0, 0, 2].into()),
            port: Some(8080),
            zone: "zone-a".into(),
        })
        .collect();
    let ids: Vec<String> = inventory.iter().map(|i| i.id.clone()).collect();
    let mut m = Model::new(inventory);
    for n in 0..20 {
        let listener = Listener {
            protocol: Protocol::Http,
            port: 80 + n,
            instance_protocol: Protocol::Http,
            instance_port: 8080,
            ssl_certificate_id: None,
        };
        let name = format!("lb{n}");
        m.create(
            &name,
            vec![listener],
            vec!["zone-a".into()],
            "internal",
            vec![],
        )
        .unwrap();
        m.register(&name, &ids).unwrap();
    }
    let (mut fleet, _views, rx) = fleet();
    let t0 = Instant::now();
    let topology = Arc::new(m.topology().unwrap());
    fleet.observe(&m, &topology, 1, t0);
    let rounds = 100u32;
    let start = Instant::now();
    for i in 1..=rounds {
        fleet.observe(&m, &topology, 1, t0 + SCAN_EVERY * i);
    }
    let per_scan = start.elapsed() / rounds;
    assert!(rx.try_iter().all(|m| m == Publish::Lease(1)));
    eprintln!("one scan of 20,000 registrations, no change: {per_scan:?}");
    // After a change of the model (a new topology) a scan reads every registration
    // by name: once per change.
    for i in 1..=10u32 {
        let topology = Arc::new(m.topology().unwrap());
        let took = Instant::now();
        fleet.observe(&m, &topology, 1, t0 + SCAN_EVERY * (rounds + i));
        if i == 10 {
            eprintln!("one scan after a topology change: {:?}", took.elapsed());
        }
    }
}
