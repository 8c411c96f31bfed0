//! What the API's answers do to traffic (issue 4 §3, spec §3, §5): a created load
//! balancer listens within a second and routes to its registered healthy instances, a
//! deleted one stops listening, deregistration stops new requests at once, and drains
//! in-flight ones (or cuts them with a 504) as its attributes say.

use crate::client::Boto;
use crate::common::*;
use crate::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Which instances answered `n` requests through `port`, each on a new connection;
/// every request must get a 200.
fn answered_by(port: u16, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|i| {
            let r = Client::connect(lb_addr(port)).request(&get_close(&format!("/r/{i}")));
            assert_eq!(r.status, 200, "request {i}: {}", r.status_line);
            r.instance().unwrap_or("?").to_string()
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn created_load_balancer_listens_routes_to_healthy_instances_and_stops_when_deleted() {
    let b1 = Backend::echo(IP1, "i-rt1");
    let dead = Instance::new("i-dead", lb_addr_on(IP2, free_port(IP2)), "zone-a");
    let clb = clb_api(&[b1.instance("zone-a"), dead], &[]);
    let mut boto = Boto::new(clb.api_addr());

    let port = create_lb(&mut boto, "rt", b1.addr.port(), &["zone-a"]);
    let answered = Instant::now();
    assert!(
        wait_until(SOON, || accepts(lb_addr(port))),
        "port {port} of a created load balancer not listening within {SOON:?}"
    );
    eprintln!("listening {:?} after the answer", answered.elapsed());

    let r = boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("rt", &["i-rt1", "i-dead"]),
    );
    assert_eq!(registered(&r), ["i-dead", "i-rt1"], "{r}");
    // The first probe goes out at registration: InService at once, not after 30 s.
    wait_health(&mut boto, "rt", "i-rt1", "InService", SOON);
    assert_eq!(
        health(&mut boto, "rt", "i-rt1"),
        triple("InService", "N/A", "N/A")
    );
    assert_eq!(health(&mut boto, "rt", "i-dead").0, "OutOfService");
    // Only the healthy one gets requests.
    assert_eq!(answered_by(port, 10), set(&["i-rt1"]));

    boto.ok("DeleteLoadBalancer", &one("LoadBalancerName", "rt"));
    assert!(
        wait_until(SOON, || !accepts(lb_addr(port))),
        "port {port} of a deleted load balancer still accepts after {SOON:?}"
    );
    // The flags' load balancer is untouched.
    let r = clb.connect().request(&get_close("/flags"));
    assert_eq!(r.status, 200, "{}", r.status_line);
}

fn lb_addr_on(ip_str: &str, port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::new(ip(ip_str), port)
}

#[test]
fn new_listener_listens_and_deleted_listener_stops() {
    let b1 = Backend::echo(IP1, "i-ls1");
    let clb = clb_api(&[b1.instance("zone-a")], &[]);
    let mut boto = Boto::new(clb.api_addr());
    let port = create_lb(&mut boto, "ls", b1.addr.port(), &["zone-a"]);
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("ls", &["i-ls1"]),
    );
    wait_health(&mut boto, "ls", "i-ls1", "InService", SOON);

    let port2 = free_port("127.0.0.1");
    let mut add = one("LoadBalancerName", "ls");
    add.extend(listener(0, port2, b1.addr.port()));
    boto.ok("CreateLoadBalancerListeners", &add);
    assert!(
        wait_until(SOON, || accepts(lb_addr(port2))),
        "new listener {port2} not listening within {SOON:?}"
    );
    assert_eq!(answered_by(port2, 3), set(&["i-ls1"]));

    let mut del = one("LoadBalancerName", "ls");
    del.extend(one("LoadBalancerPorts.0", &port2.to_string()));
    boto.ok("DeleteLoadBalancerListeners", &del);
    assert!(
        wait_until(SOON, || !accepts(lb_addr(port2))),
        "deleted listener {port2} still accepts after {SOON:?}"
    );
    // The other listener still works.
    assert_eq!(answered_by(port, 3), set(&["i-ls1"]));
}

#[test]
fn deregistration_stops_new_requests_at_once_and_registration_adds_the_instance_back() {
    let b1 = Backend::echo(IP1, "i-dr1");
    let b2 = Backend::echo(IP2, "i-dr2");
    let clb = clb_api(&[b1.instance("zone-a"), b2.instance("zone-a")], &[]);
    let mut boto = Boto::new(clb.api_addr());
    let port = create_lb(&mut boto, "dr", b1.addr.port(), &["zone-a"]);
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("dr", &["i-dr1", "i-dr2"]),
    );
    wait_health(&mut boto, "dr", "i-dr1", "InService", SOON);
    wait_health(&mut boto, "dr", "i-dr2", "InService", SOON);
    assert_eq!(answered_by(port, 10), set(&["i-dr1", "i-dr2"]));

    let r = boto.ok(
        "DeregisterInstancesFromLoadBalancer",
        &with_instances("dr", &["i-dr1"]),
    );
    assert_eq!(registered(&r), ["i-dr2"], "{r}");
    // No wait: the very next requests avoid it.
    let before = b1.requests();
    assert_eq!(answered_by(port, 10), set(&["i-dr2"]));
    assert_eq!(
        b1.requests(),
        before,
        "a deregistered instance got a request"
    );
    // Idle and draining disabled: gone from the list at once.
    assert_eq!(listed_health(&mut boto, "dr"), ["i-dr2"]);
    assert_eq!(
        health(&mut boto, "dr", "i-dr1"),
        triple("OutOfService", REASON_INSTANCE, DESC_NOT_REGISTERED)
    );

    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("dr", &["i-dr1"]),
    );
    wait_health(&mut boto, "dr", "i-dr1", "InService", SOON);
    let mut seen = BTreeSet::new();
    let both = wait_until(WAIT, || {
        seen.extend(answered_by(port, 2));
        seen.len() == 2
    });
    assert!(both, "after registering again only {seen:?} answered");
}

/// Draining enabled: the in-flight request on the deregistered instance completes
/// while DescribeInstanceHealth says so; then the instance is gone.
#[test]
fn draining_lets_the_in_flight_request_finish_then_the_instance_is_gone() {
    const DELAY: Duration = Duration::from_secs(3);
    let slow = Backend::start(IP1, "i-slow", Behavior::Delay(DELAY));
    let fast = Backend::echo(IP2, "i-fast");
    let clb = clb_api(&[slow.instance("zone-a"), fast.instance("zone-a")], &[]);
    let mut boto = Boto::new(clb.api_addr());
    let port = create_lb(&mut boto, "drain", slow.addr.port(), &["zone-a"]);
    let mut params = one("LoadBalancerName", "drain");
    params.extend([
        (
            "LoadBalancerAttributes.ConnectionDraining.Enabled".to_string(),
            "true".to_string(),
        ),
        (
            "LoadBalancerAttributes.ConnectionDraining.Timeout".into(),
            "30".into(),
        ),
    ]);
    boto.ok("ModifyLoadBalancerAttributes", &params);
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("drain", &["i-slow"]),
    );
    wait_health(&mut boto, "drain", "i-slow", "InService", SOON);

    let mut client = Client::connect(lb_addr(port));
    client.send(get("/slow").as_bytes());
    let sent = Instant::now();
    assert!(
        wait_until(SOON, || slow.requests() == 1),
        "the slow request did not reach i-slow"
    );
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("drain", &["i-fast"]),
    );
    wait_health(&mut boto, "drain", "i-fast", "InService", SOON);

    let r = boto.ok(
        "DeregisterInstancesFromLoadBalancer",
        &with_instances("drain", &["i-slow"]),
    );
    assert_eq!(registered(&r), ["i-fast"], "{r}");
    let draining = triple("InService", REASON_ELB, DESC_DEREGISTERING);
    let listed = boto.ok("DescribeInstanceHealth", &one("LoadBalancerName", "drain"));
    let at = listed
        .find("InstanceStates", "InstanceId", "i-slow")
        .unwrap_or_else(|| panic!("a draining instance is still listed:\n{listed}"));
    assert_eq!(
        (
            listed.get(&format!("{at}.State")).to_string(),
            listed.get(&format!("{at}.ReasonCode")).to_string(),
            listed.get(&format!("{at}.Description")).to_string()
        ),
        draining
    );
    assert_eq!(health(&mut boto, "drain", "i-slow"), draining);
    assert!(
        sent.elapsed() < DELAY,
        "the test was too slow to see the draining state"
    );
    // New requests go to the other instance meanwhile.
    assert_eq!(answered_by(port, 3), set(&["i-fast"]));

    let response = client.response();
    assert_eq!(
        response.status, 200,
        "in-flight request: {}",
        response.status_line
    );
    assert_eq!(response.instance(), Some("i-slow"));

    let mut last = Vec::new();
    let gone = wait_until(WAIT, || {
        last = listed_health(&mut boto, "drain");
        last == ["i-fast"]
    });
    assert!(gone, "drained instance still listed: {last:?}");
    assert_eq!(
        health(&mut boto, "drain", "i-slow"),
        triple("OutOfService", REASON_INSTANCE, DESC_NOT_REGISTERED)
    );
}

/// Draining disabled (the API default): the in-flight request is cut with ELB's 504.
#[test]
fn without_draining_the_in_flight_request_gets_504() {
    const DELAY: Duration = Duration::from_secs(6);
    let slow = Backend::start(IP1, "i-cut", Behavior::Delay(DELAY));
    let clb = clb_api(&[slow.instance("zone-a")], &[]);
    let mut boto = Boto::new(clb.api_addr());
    let port = create_lb(&mut boto, "nodrain", slow.addr.port(), &["zone-a"]);
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("nodrain", &["i-cut"]),
    );
    wait_health(&mut boto, "nodrain", "i-cut", "InService", SOON);

    let mut client = Client::connect(lb_addr(port));
    client.send(get("/slow").as_bytes());
    let sent = Instant::now();
    assert!(
        wait_until(SOON, || slow.requests() == 1),
        "the slow request did not reach i-cut"
    );
    boto.ok(
        "DeregisterInstancesFromLoadBalancer",
        &with_instances("nodrain", &["i-cut"]),
    );
    let response = client.response();
    assert!(
        sent.elapsed() < DELAY,
        "the response came after the instance answered ({:?}): not cut",
        sent.elapsed()
    );
    assert_canned(&response, "HTTP/1.1 504 GATEWAY_TIMEOUT");
    assert!(listed_health(&mut boto, "nodrain").is_empty());
}

#[test]
fn instance_health_strings_follow_registration_zones_and_deregistration() {
    let b1 = Backend::echo(IP1, "i-ok");
    let b3 = Backend::echo(IP3, "i-zone-b");
    let dead = Instance::new("i-dead", lb_addr_on(IP2, free_port(IP2)), "zone-a");
    let never = Instance::new("i-never", lb_addr_on(IP2, free_port(IP2)), "zone-a");
    let clb = clb_api(
        &[b1.instance("zone-a"), b3.instance("zone-b"), dead, never],
        &[],
    );
    let mut boto = Boto::new(clb.api_addr());
    let port = create_lb(&mut boto, "hs", b1.addr.port(), &["zone-a", "zone-b"]);
    // Slow probes and a high unhealthy threshold: a failed first probe leaves the
    // registering state alone for a long time. (Each inventory instance's own port
    // overrides the check's port 80.)
    let check = [
        ("LoadBalancerName", "hs"),
        ("HealthCheck.Target", "TCP:80"),
        ("HealthCheck.Interval", "300"),
        ("HealthCheck.Timeout", "5"),
        ("HealthCheck.UnhealthyThreshold", "10"),
        ("HealthCheck.HealthyThreshold", "2"),
    ];
    boto.ok("ConfigureHealthCheck", &check);

    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("hs", &["i-dead"]),
    );
    assert_eq!(
        health(&mut boto, "hs", "i-dead"),
        triple("OutOfService", REASON_ELB, DESC_REGISTERING)
    );
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("hs", &["i-ok", "i-zone-b"]),
    );
    wait_health(&mut boto, "hs", "i-ok", "InService", SOON);
    wait_health(&mut boto, "hs", "i-zone-b", "InService", SOON);
    assert_eq!(
        health(&mut boto, "hs", "i-ok"),
        triple("InService", "N/A", "N/A")
    );
    assert_eq!(
        health(&mut boto, "hs", "i-dead"),
        triple("OutOfService", REASON_ELB, DESC_REGISTERING)
    );
    assert_eq!(
        listed_health(&mut boto, "hs"),
        ["i-dead", "i-ok", "i-zone-b"]
    );

    // Disabling zone-b: its instance stays registered but is out of service.
    let mut disable = one("LoadBalancerName", "hs");
    disable.extend(one("AvailabilityZones.0", "zone-b"));
    boto.ok("DisableAvailabilityZonesForLoadBalancer", &disable);
    let mut last = None;
    let out = wait_until(WAIT, || {
        let h = health(&mut boto, "hs", "i-zone-b");
        let done = h == triple("OutOfService", REASON_ELB, DESC_ZONE_DISABLED);
        last = Some(h);
        done
    });
    assert!(out, "i-zone-b in a disabled zone: {last:?}");
    assert_eq!(
        listed_health(&mut boto, "hs"),
        ["i-dead", "i-ok", "i-zone-b"]
    );
    let before = b3.requests();
    assert_eq!(answered_by(port, 6), set(&["i-ok"]));
    assert_eq!(
        b3.requests(),
        before,
        "an instance in a disabled zone got a request"
    );

    // Never registered, and no longer registered.
    assert_eq!(
        health(&mut boto, "hs", "i-never"),
        triple("OutOfService", REASON_INSTANCE, DESC_NOT_REGISTERED),
        "an inventory id never registered here"
    );
    boto.ok(
        "DeregisterInstancesFromLoadBalancer",
        &with_instances("hs", &["i-dead"]),
    );
    assert_eq!(
        health(&mut boto, "hs", "i-dead"),
        triple("OutOfService", REASON_INSTANCE, DESC_NOT_REGISTERED)
    );
    boto.expect_err(
        "DescribeInstanceHealth",
        &with_instances("hs", &["i-bogus"]),
        "InvalidInstance",
        400,
    );
}

/// Draining enabled, but the timeout passes first: the instance is gone at the timeout
/// and the request still in flight is cut with ELB's 504 (no response byte was sent).
#[test]
fn draining_timeout_cuts_what_is_still_in_flight() {
    const DELAY: Duration = Duration::from_secs(8);
    let slow = Backend::start(IP1, "i-late", Behavior::Delay(DELAY));
    let clb = clb_api(&[slow.instance("zone-a")], &[]);
    let mut boto = Boto::new(clb.api_addr());
    let port = create_lb(&mut boto, "drain1", slow.addr.port(), &["zone-a"]);
    let mut params = one("LoadBalancerName", "drain1");
    params.extend([
        (
            "LoadBalancerAttributes.ConnectionDraining.Enabled".to_string(),
            "true".to_string(),
        ),
        (
            "LoadBalancerAttributes.ConnectionDraining.Timeout".into(),
            "1".into(),
        ),
    ]);
    boto.ok("ModifyLoadBalancerAttributes", &params);
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("drain1", &["i-late"]),
    );
    wait_health(&mut boto, "drain1", "i-late", "InService", SOON);

    let mut client = Client::connect(lb_addr(port));
    client.send(get("/slow").as_bytes());
    let sent = Instant::now();
    assert!(
        wait_until(SOON, || slow.requests() == 1),
        "the slow request did not reach i-late"
    );
    boto.ok(
        "DeregisterInstancesFromLoadBalancer",
        &with_instances("drain1", &["i-late"]),
    );
    let deregistered = Instant::now();
    assert_eq!(
        health(&mut boto, "drain1", "i-late"),
        triple("InService", REASON_ELB, DESC_DEREGISTERING)
    );
    let mut last = Vec::new();
    let gone = wait_until(Duration::from_secs(4), || {
        last = listed_health(&mut boto, "drain1");
        last.is_empty()
    });
    assert!(
        gone,
        "still listed {:?} after deregistration: {last:?}",
        deregistered.elapsed()
    );
    assert!(
        deregistered.elapsed() >= Duration::from_millis(900),
        "gone after {:?}, before the 1 s draining timeout",
        deregistered.elapsed()
    );
    let response = client.response();
    assert!(
        sent.elapsed() < DELAY,
        "the response came after the instance answered ({:?}): not cut",
        sent.elapsed()
    );
    assert_canned(&response, "HTTP/1.1 504 GATEWAY_TIMEOUT");
}

/// A listener port another process holds: the change is refused, nothing is created.
#[test]
fn a_port_another_process_holds_is_invalid_configuration() {
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port to hold");
    let held = holder.local_addr().expect("held addr").port();
    boto.expect_err(
        "CreateLoadBalancer",
        &create_params("clash", held, 8080, &["zone-a"]),
        "InvalidConfigurationRequest",
        409,
    );
    boto.expect_err(
        "DescribeLoadBalancers",
        &one("LoadBalancerNames.0", "clash"),
        "LoadBalancerNotFound",
        400,
    );
    create_lb(&mut boto, "noclash", 8080, &["zone-a"]);
    let mut add = one("LoadBalancerName", "noclash");
    add.extend(listener(0, held, 8080));
    boto.expect_err(
        "CreateLoadBalancerListeners",
        &add,
        "InvalidConfigurationRequest",
        409,
    );
    let d = boto.ok(
        "DescribeLoadBalancers",
        &one("LoadBalancerNames.0", "noclash"),
    );
    assert_eq!(
        d.len("LoadBalancerDescriptions.0.ListenerDescriptions"),
        1,
        "{d}"
    );
}
