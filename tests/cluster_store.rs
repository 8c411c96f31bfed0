//! Issue 13, state in etcd: several real clb processes with `--cluster` on one real
//! etcd. A change made through any node's API is live on the others; two nodes
//! writing the same load balancer at once lose nothing; a restarted node loads the
//! model from etcd; with etcd down traffic flows, writes answer 503 and change nothing,
//! and when etcd returns writes work again and the nodes converge without a restart.

#[path = "api/client.rs"]
#[allow(dead_code)]
mod client;
mod common;

use client::{Boto, Outcome};
use common::cluster::*;
use common::etcd::EtcdServer;
use common::*;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const CONVERGE: Duration = Duration::from_secs(20);

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn create(boto: &mut Boto, name: &str, port: u16, instance_port: u16) {
    let (port, instance_port) = (port.to_string(), instance_port.to_string());
    boto.ok(
        "CreateLoadBalancer",
        &params(&[
            ("LoadBalancerName", name),
            ("Listeners.0.Protocol", "HTTP"),
            ("Listeners.0.LoadBalancerPort", &port),
            ("Listeners.0.InstanceProtocol", "HTTP"),
            ("Listeners.0.InstancePort", &instance_port),
            ("AvailabilityZones.0", "zone-a"),
        ]),
    );
}

fn register(boto: &mut Boto, name: &str, ids: &[&str]) -> Outcome {
    let mut p = params(&[("LoadBalancerName", name)]);
    for (i, id) in ids.iter().enumerate() {
        p.push((format!("Instances.{i}.InstanceId"), id.to_string()));
    }
    boto.call("RegisterInstancesWithLoadBalancer", &p)
}

/// The instance ids node `api` has registered on `name` (None: it has no such load balancer).
fn instances(api: SocketAddr, name: &str) -> Option<Vec<String>> {
    let (status, body) = query(
        api,
        &[
            ("Action", "DescribeLoadBalancers"),
            ("LoadBalancerNames.member.1", name),
        ],
    )?;
    if status != 200 {
        return None;
    }
    let mut ids: Vec<String> = body
        .split("<InstanceId>")
        .skip(1)
        .filter_map(|s| s.split("</InstanceId>").next().map(str::to_string))
        .collect();
    ids.sort();
    Some(ids)
}

fn listener_addr(node: u8, port: u16) -> SocketAddr {
    SocketAddr::new(ip(&node_ip(node)), port)
}

#[test]
fn a_change_on_one_node_is_live_on_the_other_and_survives_its_restart() {
    let etcd = EtcdServer::start();
    let backend = Backend::start("127.0.0.1", "i-web", Behavior::Echo);
    let flags_port = free_port("127.0.1.1");
    let n1 = start_node(&etcd, 1, flags_port);
    let mut n2 = start_node(&etcd, 2, flags_port);
    let mut boto = Boto::new(n1.api.unwrap());
    let port = free_port("127.0.2.1");
    create(&mut boto, "web", port, backend.addr.port());
    let id = backend.addr.to_string();
    assert!(matches!(register(&mut boto, "web", &[&id]), Outcome::Ok(_)));
    let on_n2 = listener_addr(2, port);
    assert!(
        wait_until(CONVERGE, || serves(on_n2, "i-web")),
        "node 2 did not serve web; log:\n{}",
        n2.log_text()
    );
    assert!(serves(listener_addr(1, port), "i-web"));
    // A node that restarts reads the model from etcd.
    n2.restart();
    assert_eq!(instances(n2.api.unwrap(), "web"), Some(vec![id]));
    assert!(
        wait_until(CONVERGE, || serves(on_n2, "i-web")),
        "node 2 after restart; log:\n{}",
        n2.log_text()
    );
    // Deleting on node 2 closes the listener on node 1.
    let mut boto2 = Boto::new(n2.api.unwrap());
    boto2.ok(
        "DeleteLoadBalancer",
        &params(&[("LoadBalancerName", "web")]),
    );
    let on_n1 = listener_addr(1, port);
    assert!(
        wait_until(CONVERGE, || instances(n1.api.unwrap(), "web").is_none()
            && !serves(on_n1, "i-web")),
        "node 1 still has web; log:\n{}",
        n1.log_text()
    );
}

#[test]
fn concurrent_registrations_on_two_nodes_and_on_one_are_all_kept() {
    let etcd = EtcdServer::start();
    let flags_port = free_port("127.0.1.1");
    let n1 = start_node(&etcd, 1, flags_port);
    let n2 = start_node(&etcd, 2, flags_port);
    let (a1, a2) = (n1.api.unwrap(), n2.api.unwrap());
    let mut boto = Boto::new(a1);
    create(&mut boto, "race", free_port("127.0.2.1"), 80);
    assert!(wait_until(CONVERGE, || instances(a2, "race").is_some()));
    // Plain GETs rather than boto3, so the two nodes' writes really overlap.
    const EACH: u16 = 25;
    let writer = |api: SocketAddr, base: u16| {
        std::thread::spawn(move || {
            let mut throttled = 0;
            for i in 0..EACH {
                let id = format!("127.0.0.1:{}", base + i);
                // Throttling (other nodes kept winning) is retried, as AWS clients do.
                for _ in 0..20 {
                    let answer = query(
                        api,
                        &[
                            ("Action", "RegisterInstancesWithLoadBalancer"),
                            ("LoadBalancerName", "race"),
                            ("Instances.member.1.InstanceId", &id),
                        ],
                    );
                    match &answer {
                        Some((200, _)) => break,
                        Some((400, body)) if body.contains("<Code>Throttling</Code>") => {
                            throttled += 1
                        }
                        other => panic!("register {id} on {api}: {other:?}"),
                    }
                }
            }
            throttled
        })
    };
    // Two writers per node: a node's writes overlap too (each waits for the one ahead
    // of it while its connection is parked; control/server.rs).
    let bases = [(a1, 10000), (a1, 15000), (a2, 20000), (a2, 25000)];
    let writers: Vec<_> = bases.iter().map(|&(api, base)| writer(api, base)).collect();
    let throttled: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let mut want: Vec<String> = (0..EACH)
        .flat_map(|i| bases.map(|(_, base)| format!("127.0.0.1:{}", base + i)))
        .collect();
    want.sort();
    for (node, api) in [(1, a1), (2, a2)] {
        let mut last = None;
        let same = wait_until(CONVERGE, || {
            last = instances(api, "race");
            last.as_ref() == Some(&want)
        });
        assert!(
            same,
            "node {node} has {last:?}, want all {} registrations",
            want.len()
        );
    }
    let conflicts = n1
        .log_text()
        .matches("reloading and applying again")
        .count()
        + n2.log_text()
            .matches("reloading and applying again")
            .count();
    eprintln!("conflicts retried by the nodes: {conflicts}; Throttling answers retried by the clients: {throttled}");
}

#[test]
fn etcd_down_traffic_flows_writes_refused_then_nodes_converge() {
    let mut etcd = EtcdServer::start();
    let backend = Backend::start("127.0.0.1", "i-steady", Behavior::Echo);
    let flags_port = free_port("127.0.1.1");
    let n1 = start_node(&etcd, 1, flags_port);
    let n2 = start_node(&etcd, 2, flags_port);
    let (a1, a2) = (n1.api.unwrap(), n2.api.unwrap());
    let mut boto = Boto::new(a1);
    let port = free_port("127.0.2.1");
    create(&mut boto, "steady", port, backend.addr.port());
    let id = backend.addr.to_string();
    assert!(matches!(
        register(&mut boto, "steady", &[&id]),
        Outcome::Ok(_)
    ));
    assert!(wait_until(CONVERGE, || serves(
        listener_addr(2, port),
        "i-steady"
    )));

    etcd.stop();
    for node in [1, 2] {
        assert!(
            serves(listener_addr(node, port), "i-steady"),
            "node {node} stopped serving with etcd down"
        );
    }
    match register(&mut boto, "steady", &["127.0.0.1:9"]) {
        Outcome::Err(e) => {
            assert_eq!(
                (e.code.as_str(), e.status),
                ("ServiceUnavailable", 503),
                "{e:?}"
            );
            assert!(e.message.contains("unreachable"), "{e:?}");
        }
        other => panic!("a write with etcd down: {other:?}"),
    }
    // Nothing acknowledged, nothing changed; reads answer from what the node has, and say so.
    assert_eq!(instances(a1, "steady"), Some(vec![id.clone()]));
    let describe = [("Action", "DescribeLoadBalancers")];
    let stale = |api| {
        query(api, &describe)
            .is_some_and(|(_, text)| text.contains("x-clb-stale: etcd unreachable"))
    };
    assert!(
        wait_until(CONVERGE, || stale(a2)),
        "node 2 (only its watch saw etcd go) does not say so"
    );
    assert!(stale(a1));
    assert_eq!(instances(a2, "steady"), Some(vec![id.clone()]));
    assert!(serves(listener_addr(2, port), "i-steady"));

    etcd.resume();
    assert!(matches!(
        register(&mut boto, "steady", &["127.0.0.1:9"]),
        Outcome::Ok(_)
    ));
    let mut want = vec![id, "127.0.0.1:9".to_string()];
    want.sort();
    let mut last = None;
    let converged = wait_until(CONVERGE, || {
        last = instances(a2, "steady");
        last.as_ref() == Some(&want)
    });
    assert!(
        converged,
        "node 2 has {last:?} after etcd came back; log:\n{}",
        n2.log_text()
    );
    assert!(
        wait_until(CONVERGE, || !stale(a2)),
        "node 2 still says stale after etcd came back"
    );
}

/// Propagation: API answer on node 1 → the change visible on nodes 2 and 3 (their
/// DescribeLoadBalancers), over 200 registrations. Ignored by default: it takes a
/// while on a loaded machine and prints figures rather than checking a bound.
/// `cargo test --test cluster_store propagation -- --ignored --nocapture`
#[test]
#[ignore]
fn propagation() {
    let etcd = EtcdServer::start();
    let flags_port = free_port("127.0.1.1");
    let nodes: Vec<Clb> = (1..=3).map(|n| start_node(&etcd, n, flags_port)).collect();
    let apis: Vec<SocketAddr> = nodes.iter().map(|n| n.api.unwrap()).collect();
    let mut boto = Boto::new(apis[0]);
    create(&mut boto, "prop", free_port("127.0.2.1"), 80);
    assert!(wait_until(CONVERGE, || apis[1..]
        .iter()
        .all(|a| instances(*a, "prop").is_some())));
    let mut delays: Vec<Vec<Duration>> = vec![Vec::new(), Vec::new()];
    for i in 0..200u16 {
        let id = format!("127.0.0.1:{}", 30000 + i);
        let (status, body) = query(
            apis[0],
            &[
                ("Action", "RegisterInstancesWithLoadBalancer"),
                ("LoadBalancerName", "prop"),
                ("Instances.member.1.InstanceId", &id),
            ],
        )
        .expect("node 1 answers");
        assert_eq!(status, 200, "{body}");
        let answered = Instant::now();
        let mut seen = [None, None];
        let all = wait_until(CONVERGE, || {
            for (k, api) in apis[1..].iter().enumerate() {
                if seen[k].is_none() && instances(*api, "prop").is_some_and(|ids| ids.contains(&id))
                {
                    seen[k] = Some(answered.elapsed());
                }
            }
            seen.iter().all(Option::is_some)
        });
        assert!(all, "change {i} did not reach every node");
        for k in 0..2 {
            delays[k].push(seen[k].unwrap_or_default());
        }
    }
    for (k, d) in delays.iter_mut().enumerate() {
        d.sort();
        let at = |q: f64| d[((d.len() as f64 * q).ceil() as usize).saturating_sub(1)];
        eprintln!(
            "node {}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
            k + 2,
            d.len(),
            at(0.50).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            d[d.len() - 1].as_secs_f64() * 1e3
        );
    }
}

/// The `AWSELB=...` pair a response sets, if any.
fn awselb(r: &Response) -> Option<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, v)| {
            v.starts_with("AWSELB=")
                .then(|| v.split(';').next().unwrap_or("").to_string())
        })
}

fn get_with_cookie(addr: SocketAddr, cookie: Option<&str>) -> Response {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    Client::connect(addr).request(&format!(
        "GET /s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{cookie}\r\n"
    ))
}

#[test]
fn a_sticky_cookie_from_one_node_is_honoured_by_another() {
    let etcd = EtcdServer::start();
    let b1 = Backend::start("127.0.0.1", "i-1", Behavior::Echo);
    let b2 = Backend::start("127.0.0.1", "i-2", Behavior::Echo);
    let flags_port = free_port("127.0.1.1");
    let n1 = start_node(&etcd, 1, flags_port);
    let n2 = start_node(&etcd, 2, flags_port);
    let mut boto = Boto::new(n1.api.unwrap());
    let port = free_port("127.0.2.1");
    create(&mut boto, "sticky", port, 80);
    let (id1, id2) = (b1.addr.to_string(), b2.addr.to_string());
    assert!(matches!(
        register(&mut boto, "sticky", &[&id1, &id2]),
        Outcome::Ok(_)
    ));
    let policy = params(&[
        ("LoadBalancerName", "sticky"),
        ("PolicyName", "s"),
        ("CookieExpirationPeriod", "60"),
    ]);
    boto.ok("CreateLBCookieStickinessPolicy", &policy);
    let port_text = port.to_string();
    let on_listener = params(&[
        ("LoadBalancerName", "sticky"),
        ("LoadBalancerPort", &port_text),
        ("PolicyNames.0", "s"),
    ]);
    boto.ok("SetLoadBalancerPoliciesOfListener", &on_listener);
    // Node 2 has the policy and both instances in service.
    let (a1, a2) = (listener_addr(1, port), listener_addr(2, port));
    let mut seen = std::collections::HashSet::new();
    let ready = wait_until(CONVERGE, || {
        if TcpStream::connect_timeout(&a2, Duration::from_millis(200)).is_err() {
            return false;
        }
        let r = get_with_cookie(a2, None);
        if r.status == 200 && awselb(&r).is_some() {
            seen.extend(r.instance().map(str::to_string));
        }
        seen.len() == 2
    });
    assert!(
        ready,
        "node 2 never served both instances with the policy (saw {seen:?}); log:\n{}",
        n2.log_text()
    );
    let first = get_with_cookie(a1, None);
    let cookie = awselb(&first).expect("node 1 sets AWSELB");
    let pinned = first.instance().expect("an instance answered").to_string();
    for _ in 0..10 {
        let r = get_with_cookie(a2, Some(&cookie));
        assert_eq!(
            r.instance(),
            Some(pinned.as_str()),
            "node 2 did not honour node 1's cookie"
        );
    }
}

#[test]
fn cluster_flags_are_checked() {
    let l = ["--listener", "http:18080:http:80", "--api", "off"];
    let with =
        |extra: &[&'static str]| -> Vec<&'static str> { l.iter().chain(extra).copied().collect() };
    assert_refused(
        &with(&["--cluster", "https://127.0.0.1:2379"]),
        &["--cluster", "https"],
    );
    assert_refused(
        &with(&["--cluster", "127.0.0.1"]),
        &["--cluster", "http://HOST:PORT"],
    );
    assert_refused(
        &with(&["--cluster", "http://127.0.0.1:2379,"]),
        &["--cluster"],
    );
    assert_refused(
        &with(&["--cluster", "http://127.0.0.1:2379", "--state", "/tmp/x"]),
        &["--cluster", "--state"],
    );
    assert_refused(
        &with(&[
            "--cluster",
            "http://127.0.0.1:2379",
            "--cluster-prefix",
            "clb",
        ]),
        &["--cluster-prefix", "'/'"],
    );
    assert_refused(
        &with(&["--cluster-prefix", "/a/"]),
        &["--cluster-prefix", "needs --cluster"],
    );
    // etcd not there at start: a node that cannot read the model does not start.
    let dead = format!("http://127.0.0.1:{}", free_port("127.0.0.1"));
    let run = run_clb(&[&l[..], &["--cluster", &dead]].concat());
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("--cluster") && run.stderr.contains("unreachable"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_change_that_cannot_run_on_a_node_is_neither_overwritten_nor_blocking() {
    let etcd = EtcdServer::start();
    let flags_port = free_port("127.0.1.1");
    let n1 = start_node(&etcd, 1, flags_port);
    let n2 = start_node(&etcd, 2, flags_port);
    let (a1, a2) = (n1.api.unwrap(), n2.api.unwrap());
    // Another process holds the port on node 2's address.
    let blocker = bind_unique("127.0.2.1");
    let port = blocker.local_addr().unwrap().port();
    let mut boto1 = Boto::new(a1);
    create(&mut boto1, "blocked", port, 80);
    assert!(
        n2.wait_for_log("cannot run here", 1, CONVERGE),
        "node 2 log:\n{}",
        n2.log_text()
    );
    // Node 2 still writes other load balancers...
    let mut boto2 = Boto::new(a2);
    create(&mut boto2, "other", free_port("127.0.2.1"), 80);
    assert!(wait_until(CONVERGE, || instances(a1, "other").is_some()));
    // ...but does not write its stale copy of the one it cannot run.
    match register(&mut boto2, "blocked", &["127.0.0.1:7"]) {
        Outcome::Err(e) => assert_eq!(e.status, 400, "{e:?}"),
        other => panic!("a write to a load balancer node 2 cannot run: {other:?}"),
    }
    assert_eq!(instances(a1, "blocked"), Some(vec![]));
    // Once the port is free, the next version is taken.
    drop(blocker);
    assert!(matches!(
        register(&mut boto1, "blocked", &["127.0.0.1:8"]),
        Outcome::Ok(_)
    ));
    let want = Some(vec!["127.0.0.1:8".to_string()]);
    assert!(
        wait_until(CONVERGE, || instances(a2, "blocked") == want),
        "node 2 log:\n{}",
        n2.log_text()
    );
}

#[test]
fn a_load_balancer_a_node_has_no_address_for_is_not_deleted_by_its_writes() {
    let etcd = EtcdServer::start();
    let endpoint = etcd.endpoint();
    let flags_port = free_port("127.0.1.1");
    let listener = format!("http:{flags_port}:http:80");
    let node = |pool: &str, api_ip: &str| {
        let api = format!("{api_ip}:{}", free_port(api_ip));
        let args = [
            "--listener",
            &listener,
            "--address-pool",
            pool,
            "--api",
            &api,
            "--cluster",
            &endpoint,
            "--workers",
            "1",
        ];
        Clb::start_env(&args, CLUSTER_ENV)
    };
    // Node 1 has room for two load balancers, node 2 for one (the flags' one).
    let n1 = node("127.0.1.1,127.0.1.2", "127.0.1.1");
    let n2 = node("127.0.2.1", "127.0.2.1");
    let (a1, a2) = (n1.api.unwrap(), n2.api.unwrap());
    let mut boto1 = Boto::new(a1);
    create(&mut boto1, "second", free_port("127.0.1.2"), 80);
    assert!(
        n2.wait_for_log("cannot run here", 1, CONVERGE),
        "node 2 log:\n{}",
        n2.log_text()
    );
    // A write on node 2 to the load balancer it does have leaves "second" alone.
    let mut boto2 = Boto::new(a2);
    assert!(matches!(
        register(&mut boto2, "default", &["127.0.0.1:7"]),
        Outcome::Ok(_)
    ));
    assert!(wait_until(CONVERGE, || instances(a1, "default")
        == Some(vec!["127.0.0.1:7".to_string()])));
    assert_eq!(
        instances(a1, "second"),
        Some(vec![]),
        "node 2's write deleted node 1's load balancer"
    );
}
