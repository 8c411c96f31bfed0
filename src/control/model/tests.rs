use super::*;
use crate::config::{Protocol, Registration};

fn http(port: u16, instance_port: u16) -> Listener {
    Listener {
        protocol: Protocol::Http,
        port,
        instance_protocol: Protocol::Http,
        instance_port,
        ssl_certificate_id: None,
    }
}

fn model() -> Model {
    let inventory = vec![Instance {
        id: "i-1".into(),
        host: Host::Ip([127, 0, 0, 2].into()),
        port: Some(8080),
        zone: "zone-a".into(),
    }];
    let mut m = Model::new(inventory);
    m.create(
        "web",
        vec![http(80, 8080)],
        vec!["zone-a".into()],
        "internet-facing",
        vec![],
    )
    .unwrap();
    m
}

#[test]
fn create_checks_names_duplicates_and_listeners() {
    let mut m = model();
    let dup = m.create(
        "web",
        vec![http(81, 80)],
        vec!["zone-a".into()],
        "internal",
        vec![],
    );
    assert_eq!(dup.unwrap_err().code, "DuplicateLoadBalancerName");
    let bad = m.create(
        "-bad",
        vec![http(81, 80)],
        vec!["zone-a".into()],
        "internal",
        vec![],
    );
    assert_eq!(bad.unwrap_err().code, "ValidationError");
    let none = m.create("empty", vec![], vec!["zone-a".into()], "internal", vec![]);
    assert_eq!(none.unwrap_err().code, "ValidationError");
    let ssl = Listener {
        protocol: Protocol::Ssl,
        port: 5432,
        instance_protocol: Protocol::Tcp,
        instance_port: 5432,
        ssl_certificate_id: Some("cert".into()),
    };
    assert!(m
        .create("db", vec![ssl], vec!["a".into()], "internal", vec![])
        .is_ok());
    assert_eq!(
        m.lb("web").unwrap().health_check.target.to_string(),
        "TCP:8080"
    );
}

#[test]
fn listeners_are_unique_per_port_and_idempotent() {
    let mut m = model();
    m.create_listeners("web", vec![http(80, 8080)]).unwrap();
    assert_eq!(
        m.create_listeners("web", vec![http(80, 9090)])
            .unwrap_err()
            .code,
        "DuplicateListener"
    );
    assert_eq!(
        m.delete_listeners("web", &[81]).unwrap_err().code,
        "ListenerNotFound"
    );
    m.delete_listeners("web", &[80]).unwrap();
    assert!(m.lb("web").unwrap().listeners.is_empty());
    assert_eq!(
        m.create_listeners("nope", vec![]).unwrap_err().code,
        "LoadBalancerNotFound"
    );
}

#[test]
fn registration_resolves_ids_and_reports_health() {
    let mut m = model();
    let ids = m
        .register("web", &["i-1".into(), "127.0.0.3:9000".into()])
        .unwrap();
    assert_eq!(ids, ["i-1", "127.0.0.3:9000"]);
    assert_eq!(
        m.register("web", &["i-404".into()]).unwrap_err().code,
        "InvalidInstance"
    );
    let rows = m.instance_health("web", &[]).unwrap();
    assert_eq!(
        rows[0].description,
        "Instance registration is still in progress."
    );
    assert_eq!(rows[0].reason_code, "ELB");
    let topo = m.topology().unwrap();
    assert_eq!(topo.instances.len(), 2);
    assert_ne!(topo.instances[0].serial, topo.instances[1].serial);
    assert_eq!(topo.backends[1].addr, "127.0.0.3:9000".parse().unwrap());
}

#[test]
fn deregistration_drains_or_removes() {
    let mut m = model();
    m.register("web", &["i-1".into()]).unwrap();
    let now = Instant::now();
    let left = m.deregister("web", &["i-1".into()], now).unwrap();
    assert!(left.is_empty());
    let row = &m.instance_health("web", &["i-1".into()]).unwrap()[0];
    assert_eq!(
        row.description,
        "Instance is not currently registered with the LoadBalancer."
    );
    assert_eq!(
        m.deregister("web", &["i-1".into()], now).unwrap_err().code,
        "InvalidInstance"
    );

    let mut attributes = m.lb("web").unwrap().attributes.clone();
    attributes.draining = true;
    attributes.draining_timeout = 10;
    m.set_attributes("web", attributes).unwrap();
    m.register("web", &["i-1".into()]).unwrap();
    m.deregister("web", &["i-1".into()], now).unwrap();
    let row = &m.instance_health("web", &[]).unwrap()[0];
    assert_eq!(
        (row.state, row.description),
        (
            "InService",
            "Instance deregistration currently in progress."
        )
    );
    let registrations: Vec<Registration> = m.lbs[0].routing().1;
    assert!(registrations[0].draining);
    // Issue 12: a zero count means nothing until every worker routes by the topology
    // that carries the drain (before that, one may still send the instance a request).
    assert!(!m.finish_draining(now, u64::MAX - 1, |_| 0));
    let epoch = m.publish();
    assert!(!m.finish_draining(now, epoch - 1, |_| 0));
    assert!(!m.finish_draining(now, epoch, |_| 1));
    assert_eq!(
        m.publish(),
        epoch + 1,
        "a later topology keeps the drain's epoch"
    );
    assert!(m.finish_draining(now, epoch, |_| 0));
    assert!(m.instance_health("web", &[]).unwrap().is_empty());
    m.register("web", &["i-1".into()]).unwrap();
    m.deregister("web", &["i-1".into()], now).unwrap();
    // Past the timeout the drain ends whatever the workers say.
    assert!(m.finish_draining(now + Duration::from_secs(11), 0, |_| 1));
}

#[test]
fn zones_and_tags() {
    let mut m = model();
    assert_eq!(
        m.enable_zones("web", vec!["zone-b".into()]).unwrap(),
        ["zone-a", "zone-b"]
    );
    assert_eq!(
        m.disable_zones("web", &["zone-a".into()]).unwrap(),
        ["zone-b"]
    );
    assert_eq!(
        m.disable_zones("web", &["zone-b".into()]).unwrap_err().code,
        "ValidationError"
    );
    let tags = |n: usize| {
        (0..n)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect::<Vec<_>>()
    };
    m.add_tags(&["web".into()], tags(10)).unwrap();
    assert_eq!(
        m.add_tags(&["web".into()], vec![("new".into(), "v".into())])
            .unwrap_err()
            .code,
        "TooManyTags"
    );
    let dup = vec![
        ("a".to_string(), "1".to_string()),
        ("a".to_string(), "2".to_string()),
    ];
    assert_eq!(
        m.add_tags(&["web".into()], dup).unwrap_err().code,
        "DuplicateTagKeys"
    );
    m.remove_tags(&["web".into()], &["k0".into()]).unwrap();
    assert_eq!(m.lb("web").unwrap().tags.len(), 9);
}
