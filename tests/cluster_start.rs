//! A node's start while etcd goes away, at every step: a relay (`common::relay`)
//! between the node and etcd closes the k-th connection the node opens and every later
//! one, for each k up to what a whole start takes. Whatever k, the node either refuses
//! to start, with a line that names `--cluster` and says etcd is unreachable, and is
//! listed nowhere, or it joined and serves the load balancer with the configuration it
//! read, and stays so. Never a panic, never a node that hangs half-started.
//! (CI once saw a restarted node, already in the other nodes' lists, exit because etcd
//! stopped before it had read the other nodes' health views.)

mod common;

use common::cluster::{serves, start_node_with, try_start_node_env, CLUSTER_ENV};
use common::etcd::EtcdServer;
use common::relay::Relay;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const TTL_SECS: &str = "2";
/// Longer than joining tries for (the TTL plus 2 s, README "Running several nodes"),
/// so a start that fails has failed by then.
const SETTLE: Duration = Duration::from_secs(6);
const SOON: Duration = Duration::from_secs(20);

#[test]
fn etcd_going_away_at_any_step_of_a_start_refuses_it_cleanly_or_leaves_a_node_that_serves() {
    let etcd = EtcdServer::start();
    let target = etcd.client_addr();
    let backend = Backend::start("127.0.0.1", "i-web", Behavior::Echo);
    let instance = format!("i-web={}", backend.addr);
    let port = free_port("127.0.1.1");
    let flags = ["--instance", &instance, "--node-ttl", TTL_SECS];
    // Node 1 defines the load balancer in etcd; node 2 starts through the relay.
    let n1 = start_node_with(&etcd, 1, port, &flags);
    assert!(wait_until(SOON, || serves(n1.addr, "i-web")));
    let through =
        |relay: &Relay| try_start_node_env(&relay.endpoint(), 2, port, &flags, CLUSTER_ENV);
    let n2_addr: SocketAddr = format!("127.0.2.1:{port}").parse().unwrap();
    let listed =
        |etcd: &EtcdServer| matches!(etcd.client().get(b"/clb/nodes/n2"), Ok((Some(_), _)));

    // How many connections a whole start opens: up to its listing in etcd.
    let relay = Relay::start(target);
    let mut whole = through(&relay).expect("node 2 starts through the relay");
    assert!(wait_until(SOON, || listed(&etcd)), "node 2 joined");
    let steps = relay.accepted();
    whole.signal(libc::SIGTERM);
    assert!(whole.wait_exit(SOON).is_some(), "node 2 stops at SIGTERM");
    drop(relay);
    assert!(wait_until(SOON, || !listed(&etcd)));
    eprintln!("a start opens {steps} connections to etcd");

    let (mut refused, mut up) = (0, 0);
    for k in 0..=steps {
        let relay = Relay::start(target);
        relay.refuse_from(k);
        let started = Instant::now();
        let log = match through(&relay) {
            // Refused before it listened.
            Err(log) => log,
            Ok(mut node) => match node.wait_exit(SETTLE) {
                Some(_) => node.log_text(),
                None => {
                    assert!(
                        node.log_text().contains("joined as node n2"),
                        "etcd gone from connection {k}: node 2 runs but never joined:\n{}",
                        node.log_text()
                    );
                    assert!(
                        serves(n2_addr, "i-web"),
                        "etcd gone from connection {k}: node 2 runs but does not serve:\n{}",
                        node.log_text()
                    );
                    assert!(
                        node.is_running() && serves(n2_addr, "i-web"),
                        "etcd gone from connection {k}: node 2 stopped serving:\n{}",
                        node.log_text()
                    );
                    eprintln!("etcd gone from connection {k}: up and serving");
                    up += 1;
                    node.signal(libc::SIGTERM);
                    let _ = node.wait_exit(SOON);
                    continue;
                }
            },
        };
        assert!(!log.contains("panicked"), "connection {k}: a panic:\n{log}");
        assert!(
            log.contains("clb: --cluster") && log.contains("unreachable"),
            "etcd gone from connection {k}: refused without saying why:\n{log}"
        );
        eprintln!(
            "etcd gone from connection {k}: refused after {:?}",
            started.elapsed()
        );
        refused += 1;
        // A node that refused to start left nothing that lists it.
        assert!(
            wait_until(SOON, || !listed(&etcd)),
            "connection {k}: a refused node is listed"
        );
    }
    assert!(refused > 0 && up > 0, "refused {refused}, up {up}");
    assert!(serves(n1.addr, "i-web"), "node 1 served throughout");
}
