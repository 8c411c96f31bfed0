//! Issue 13 membership and faults over real processes: three clb nodes with
//! `--cluster` on a real etcd, each at 127.0.N.1 with `--node nN`. Every node's status
//! page lists the live nodes; `kill -9` takes a node out within its TTL while the others
//! serve on; SIGTERM takes it out at once; a restarted node rejoins at once; with etcd
//! down traffic flows and the list holds, and when etcd returns the nodes follow again
//! without a restart. Times are printed (README "Running several nodes").

mod common;

use common::cluster::*;
use common::etcd::EtcdServer;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const TTL_SECS: &str = "2";
const TTL: Duration = Duration::from_secs(2);
/// etcd checks lease expiry about every 500 ms; the machine is loaded.
const SLACK: Duration = Duration::from_secs(5);
const SOON: Duration = Duration::from_secs(15);

/// The node names on `api`'s status page, in order; empty when it did not answer.
fn nodes_on(api: SocketAddr) -> Vec<String> {
    let Ok(mut conn) = TcpStream::connect_timeout(&api, Duration::from_secs(2)) else {
        return Vec::new();
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.write_all(b"GET / HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = conn.read_to_string(&mut text);
    text.split("<tr class=\"node\"><td>")
        .skip(1)
        .filter_map(|row| row.split("</td>").next())
        .map(|name| name.trim_end_matches(" (this node)").to_string())
        .collect()
}

fn wait_nodes(api: SocketAddr, want: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < within {
        seen = nodes_on(api);
        if seen == want {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("status page at {api} lists {seen:?}, want {want:?} within {within:?}");
}

fn start(etcd: &EtcdServer, n: u8, port: u16, backend: &Backend) -> Clb {
    let instance = format!("i-web={}", backend.addr);
    let zone = format!("zone-{}", (b'a' + n - 1) as char);
    start_node_with(
        etcd,
        n,
        port,
        &[
            "--instance",
            &instance,
            "--node-ttl",
            TTL_SECS,
            "--node-zone",
            &zone,
        ],
    )
}

#[test]
fn nodes_join_leave_crash_rejoin_and_ride_out_an_etcd_outage() {
    let mut etcd = EtcdServer::start();
    let client = etcd.client();
    let backend = Backend::start("127.0.0.1", "i-web", Behavior::Echo);
    let port = free_port("127.0.1.1");
    let n1 = start(&etcd, 1, port, &backend);
    let n2 = start(&etcd, 2, port, &backend);
    let mut n3 = start(&etcd, 3, port, &backend);
    let api1 = n1.api.unwrap();
    wait_nodes(api1, &["n1", "n2", "n3"], SOON);
    wait_nodes(n3.api.unwrap(), &["n1", "n2", "n3"], SOON);
    let addr = |n: u8| SocketAddr::new(ip(&node_ip(n)), port);
    for n in 1..=3 {
        assert!(
            wait_until(SOON, || serves(addr(n), "i-web")),
            "node {n} serves"
        );
    }

    // kill -9: out of etcd and of the others' lists within the TTL; the others serve on.
    n3.kill_now();
    let killed = Instant::now();
    let gone = wait_nodes(api1, &["n1", "n2"], TTL + SLACK);
    eprintln!("kill -9 n3: out of n1's list after {gone:?} (TTL {TTL:?})");
    assert!(serves(addr(1), "i-web") && serves(addr(2), "i-web"));
    assert!(matches!(client.get(b"/clb/nodes/n3"), Ok((None, _))));
    let _ = killed;

    // Restarting rejoins at once (its old key, already gone here, would be taken over).
    n3.restart();
    let back = wait_nodes(api1, &["n1", "n2", "n3"], SOON);
    eprintln!("n3 restarted: in n1's list after {back:?}");

    // etcd down for twice the TTL: traffic flows, the lists hold.
    etcd.stop();
    std::thread::sleep(TTL * 2);
    for n in 1..=3 {
        assert!(serves(addr(n), "i-web"), "node {n} serves with etcd down");
    }
    assert_eq!(nodes_on(api1), ["n1", "n2", "n3"], "the list held");
    etcd.resume();
    let resumed = Instant::now();
    // Followed again without a restart: n2 stopping gracefully reaches n1 at once.
    std::thread::sleep(Duration::from_secs(3)); // the watches' backoff is capped at 2 s
    n2.signal(libc::SIGTERM);
    let left = wait_nodes(api1, &["n1", "n3"], SOON);
    eprintln!(
        "etcd back {:?} ago; SIGTERM n2: out of n1's list after {left:?}",
        resumed.elapsed() - left
    );
    assert!(
        left < TTL,
        "left by revoking its lease, not by expiry: {left:?}"
    );
    assert!(serves(addr(1), "i-web") && serves(addr(3), "i-web"));
}

#[test]
fn a_second_live_node_with_the_same_name_is_refused() {
    let etcd = EtcdServer::start();
    let backend = Backend::start("127.0.0.1", "i-web", Behavior::Echo);
    let port = free_port("127.0.1.1");
    let n1 = start(&etcd, 1, port, &backend);
    wait_nodes(n1.api.unwrap(), &["n1"], SOON);
    // Same name, another address (127.0.4.1): refused after one TTL, with a clear line.
    let api = format!("127.0.4.1:{}", free_port("127.0.4.1"));
    let listener = format!("http:{}:http:80", free_port("127.0.4.1"));
    let run = run_clb(&[
        "--listener",
        &listener,
        "--bind",
        "127.0.4.1",
        "--api",
        &api,
        "--cluster",
        &etcd.endpoint(),
        "--node",
        "n1",
        "--node-address",
        "127.0.4.1",
        "--node-ttl",
        TTL_SECS,
    ]);
    let stderr = run.stderr;
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("node name \"n1\" is taken by a live node (zone zone-a, address 127.0.1.1)"),
        "{stderr}"
    );
}

/// Item 10: a node killed with `kill -9` is out of the load balancer's DNS answers
/// (asked with dig) within the TTL; the answers list the live nodes in its zones.
#[test]
fn a_killed_node_drops_out_of_dns_within_the_ttl() {
    let etcd = EtcdServer::start();
    let backend = Backend::start("127.0.0.1", "i-web", Behavior::Echo);
    let port = free_port("127.0.1.1");
    let dns: SocketAddr = format!("127.0.1.1:{}", free_port("127.0.1.1"))
        .parse()
        .unwrap();
    let dns_flag = dns.to_string();
    let zones = ["--zones", "zone-a,zone-b,zone-c"];
    let instance = format!("i-web={}", backend.addr);
    let node = |n: u8, more: &[&str]| {
        let zone = format!("zone-{}", (b'a' + n - 1) as char);
        let mut args = vec!["--instance", &instance, "--node-ttl", TTL_SECS];
        args.extend_from_slice(&zones);
        args.extend_from_slice(&["--node-zone", &zone]);
        args.extend_from_slice(more);
        start_node_with(&etcd, n, port, &args)
    };
    let n1 = node(1, &["--dns", &dns_flag]);
    let _n2 = node(2, &[]);
    let mut n3 = node(3, &[]);
    wait_nodes(n1.api.unwrap(), &["n1", "n2", "n3"], SOON);
    let sorted = || {
        // UDP only: `addresses` compares UDP with TCP, which may straddle the change.
        let mut a = common::dns::dig(dns, "default.elb.localhost", "A", &[]).answers();
        a.sort();
        a
    };
    assert!(
        wait_until(SOON, || sorted() == ["127.0.1.1", "127.0.2.1", "127.0.3.1"]),
        "{:?}",
        sorted()
    );
    n3.kill_now();
    let killed = Instant::now();
    assert!(
        wait_until(TTL + SLACK, || sorted() == ["127.0.1.1", "127.0.2.1"]),
        "{:?}",
        sorted()
    );
    eprintln!("kill -9 n3: out of DNS after {:?}", killed.elapsed());
}

/// Item 10: one of three etcd members stopped, API writes through clb still work and
/// reach the other node; two of three stopped (no quorum), a write answers 503 and
/// traffic flows; quorum back, writes work again without restarting clb.
#[test]
fn with_one_of_three_etcd_members_down_writes_work_without_quorum_they_are_refused() {
    let mut etcd = common::etcd::EtcdCluster::start(3);
    let endpoints = etcd.endpoints().join(",");
    let backend = Backend::start("127.0.0.1", "i-web", Behavior::Echo);
    let port = free_port("127.0.1.1");
    let instance = format!("i-web={}", backend.addr);
    let extra = ["--instance", instance.as_str(), "--node-ttl", TTL_SECS];
    let n1 = start_node_on(&endpoints, 1, port, &extra);
    let n2 = start_node_on(&endpoints, 2, port, &extra);
    let (api1, api2) = (n1.api.unwrap(), n2.api.unwrap());
    wait_nodes(api1, &["n1", "n2"], SOON);
    let create = |api: SocketAddr, name: &str| {
        let lb_port = free_port("127.0.1.1").to_string();
        query(
            api,
            &[
                ("Action", "CreateLoadBalancer"),
                ("LoadBalancerName", name),
                ("Listeners.member.1.Protocol", "HTTP"),
                ("Listeners.member.1.LoadBalancerPort", &lb_port),
                ("Listeners.member.1.InstancePort", "80"),
                ("AvailabilityZones.member.1", "zone-a"),
            ],
        )
    };
    let described = |api: SocketAddr, name: &str| {
        query(
            api,
            &[
                ("Action", "DescribeLoadBalancers"),
                ("LoadBalancerNames.member.1", name),
            ],
        )
        .is_some_and(|(status, _)| status == 200)
    };

    etcd.members[0].stop();
    let stopped = Instant::now();
    let answer = create(api1, "one-down");
    assert_eq!(answer.as_ref().map(|a| a.0), Some(200), "{answer:?}");
    eprintln!(
        "1 of 3 etcd members down: CreateLoadBalancer answered 200 after {:?}",
        stopped.elapsed()
    );
    assert!(
        wait_until(SOON, || described(api2, "one-down")),
        "reached node 2"
    );
    // Membership renews through the other members past several TTLs.
    std::thread::sleep(TTL * 2);
    assert_eq!(nodes_on(api2), ["n1", "n2"]);

    etcd.members[1].stop();
    let answer = create(api1, "no-quorum");
    assert_eq!(answer.as_ref().map(|a| a.0), Some(503), "{answer:?}");
    assert!(!described(api2, "no-quorum"));
    let addr = SocketAddr::new(ip(&node_ip(2)), port);
    assert!(serves(addr, "i-web"), "traffic flows without quorum");

    etcd.members[1].resume();
    assert!(wait_until(SOON, || create(api1, "quorum-back")
        .is_some_and(|(s, _)| s == 200)));
    assert!(wait_until(SOON, || described(api2, "quorum-back")));
}
