//! Issue 13 item 5 and the fleet's name servers, over real processes: two clb nodes on
//! one etcd, each with its own `--address-pool` and `--dns`. Two load balancers on the
//! same port get their own address on every node; every node's DNS answers list each
//! live node's own address for that load balancer (checked with dig) and curl through
//! each address reaches that load balancer's instance; the apex has one NS (with glue)
//! per node; a node restarted takes the same addresses again.

mod common;

use common::cluster::{node_ip, query, serves, start_node_env, CLUSTER_ENV};
use common::dns::dig;
use common::etcd::EtcdServer;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

const SOON: Duration = Duration::from_secs(20);

struct Node {
    clb: Clb,
    dns: SocketAddr,
}

/// Node `n` at 127.0.N.1 (API, DNS, `--node-address`), its pool 127.0.N.10-12, the
/// flags' load balancer `web` on `port` with instance `web_backend`.
fn node(etcd: &EtcdServer, n: u8, port: u16, web_backend: &Backend) -> Node {
    let ip = node_ip(n);
    let dns: SocketAddr = format!("{ip}:{}", free_port(&ip)).parse().unwrap();
    let pool = format!("127.0.{n}.10,127.0.{n}.11,127.0.{n}.12");
    let instance = format!("i-web={}", web_backend.addr);
    let dns_flag = dns.to_string();
    let extra = [
        "--name",
        "web",
        "--instance",
        &instance,
        "--address-pool",
        &pool,
        "--dns",
        &dns_flag,
        "--node-ttl",
        "2",
    ];
    Node {
        clb: start_node_env(&etcd.endpoint(), n, port, &extra, CLUSTER_ENV),
        dns,
    }
}

fn a_records(dns: SocketAddr, name: &str) -> Vec<String> {
    dig(dns, name, "A", &[]).answers()
}

/// The apex's NS host names and the glue (name, address) lines, sorted.
fn name_servers(dns: SocketAddr) -> (Vec<String>, Vec<String>) {
    let d = dig(dns, "elb.localhost", "NS", &[]);
    (d.answers(), d.additional())
}

fn wait_records(dns: SocketAddr, name: &str, want: &[String]) {
    assert!(
        wait_until(SOON, || a_records(dns, name) == want),
        "{name} at {dns}: {:?}, want {want:?}",
        a_records(dns, name)
    );
}

#[test]
fn two_load_balancers_on_one_port_have_their_own_address_on_every_node() {
    let etcd = EtcdServer::start();
    let web = Backend::start("127.0.0.1", "i-web", Behavior::Echo);
    let api_backend = Backend::start("127.0.0.1", "i-api", Behavior::Echo);
    let port = free_port("127.0.1.10");
    let n1 = node(&etcd, 1, port, &web);
    let mut n2 = node(&etcd, 2, port, &web);
    let api1 = n1.clb.api.unwrap();

    // "api" on the same port as "web", created through node 1's API.
    let port_text = port.to_string();
    let id = api_backend.addr.to_string();
    for params in [
        &[
            ("Action", "CreateLoadBalancer"),
            ("LoadBalancerName", "api"),
            ("Listeners.member.1.Protocol", "HTTP"),
            ("Listeners.member.1.LoadBalancerPort", &port_text),
            ("Listeners.member.1.InstancePort", "80"),
            ("AvailabilityZones.member.1", "zone-a"),
        ][..],
        &[
            ("Action", "RegisterInstancesWithLoadBalancer"),
            ("LoadBalancerName", "api"),
            ("Instances.member.1.InstanceId", &id),
        ],
    ] {
        let answer = query(api1, params);
        assert_eq!(answer.as_ref().map(|a| a.0), Some(200), "{answer:?}");
    }

    // Each node's first pool address went to "web" (the flags' one, first in the
    // model), the second to "api"; every node's DNS lists both nodes' own addresses.
    let want = |last: u8| -> Vec<String> { (1..=2).map(|n| format!("127.0.{n}.{last}")).collect() };
    for node in [&n1, &n2] {
        wait_records(node.dns, "web.elb.localhost", &want(10));
        wait_records(node.dns, "api.elb.localhost", &want(11));
    }
    for n in 1..=2u8 {
        for (last, instance) in [(10, "i-web"), (11, "i-api")] {
            let addr: SocketAddr = format!("127.0.{n}.{last}:{port}").parse().unwrap();
            assert!(
                wait_until(SOON, || serves(addr, instance)),
                "{addr} serves {instance}"
            );
        }
    }

    // One NS per node answering DNS, each with its glue.
    for node in [&n1, &n2] {
        let (ns, glue) = name_servers(node.dns);
        assert_eq!(ns, ["n1.ns.elb.localhost.", "n2.ns.elb.localhost."]);
        assert_eq!(
            glue,
            [format!("{}", n1.dns.ip()), format!("{}", n2.dns.ip()),]
        );
    }

    // Restarted (kill -9), node 2 takes the same addresses again, although it loads
    // "api" before "web" (etcd's key order) and a fresh allocation would swap them.
    n2.clb.restart();
    for node in [&n1, &n2] {
        wait_records(node.dns, "web.elb.localhost", &want(10));
        wait_records(node.dns, "api.elb.localhost", &want(11));
    }
    let addr: SocketAddr = format!("127.0.2.11:{port}").parse().unwrap();
    assert!(wait_until(SOON, || serves(addr, "i-api")));
    let saved = etcd.etcdctl(&["get", "--print-value-only", "/clb/addresses/n2"]);
    assert!(
        saved.contains("\"api\":\"127.0.2.11\"") && saved.contains("\"web\":\"127.0.2.10\""),
        "{saved}"
    );

    // Deleted on node 2's API: gone from both nodes' DNS and from both maps.
    let answer = query(
        n2.clb.api.unwrap(),
        &[
            ("Action", "DeleteLoadBalancer"),
            ("LoadBalancerName", "api"),
        ],
    );
    assert_eq!(answer.as_ref().map(|a| a.0), Some(200), "{answer:?}");
    for node in [&n1, &n2] {
        assert!(wait_until(SOON, || dig(
            node.dns,
            "api.elb.localhost",
            "A",
            &[]
        )
        .status
            == "NXDOMAIN"));
    }
    assert!(wait_until(SOON, || !etcd
        .etcdctl(&["get", "--print-value-only", "/clb/addresses/n1"])
        .contains("api")));
}
