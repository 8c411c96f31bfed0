//! Two load balancers on one port (issue 12, item 3B): without `--address-pool` the API
//! refuses a listener port another load balancer (or the control API) already has,
//! naming it; with a pool each load balancer listens on its own address, routes only to
//! its own instances, keeps its address across a restart with `--state`, and gives it
//! back when deleted. Start-up refuses what the API would have refused.

use crate::client::{aws, Boto};
use crate::common::address_pool::*;
use crate::common::*;
use crate::*;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A state file in a directory of its own, removed on drop.
struct TempState(PathBuf);

impl TempState {
    fn new(tag: &str) -> TempState {
        let dir =
            std::env::temp_dir().join(format!("clb-api-addresses-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create state dir");
        TempState(dir.join("state"))
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempState {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn at(ip: std::net::IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

#[test]
fn without_a_pool_a_port_another_load_balancer_has_is_refused_naming_it() {
    let b1 = Backend::echo(IP1, "i-ap1");
    let clb = clb_api(&[b1.instance("zone-a")], &[]);
    let mut boto = Boto::new(clb.api_addr());

    // CreateLoadBalancer on the flags' load balancer's port.
    let message = boto.expect_err(
        "CreateLoadBalancer",
        &create_params("second", clb.port(), 80, &["zone-a"]),
        "InvalidConfigurationRequest",
        409,
    );
    assert!(
        message.contains(&format!(
            "LoadBalancerPort {} is already used by load balancer default",
            clb.port()
        )),
        "{message}"
    );
    assert!(message.contains("--address-pool"), "{message}");
    let e = boto.err(
        "DescribeLoadBalancers",
        &one("LoadBalancerNames.0", "second"),
    );
    assert_eq!(
        e.code, "LoadBalancerNotFound",
        "a refused create left {e:?}"
    );

    // Between two API-created load balancers, with the aws CLI.
    let port = create_lb(&mut boto, "second", 80, &["zone-a"]);
    let listener =
        format!("Protocol=HTTP,LoadBalancerPort={port},InstanceProtocol=HTTP,InstancePort=80");
    let run = aws(
        clb.api_addr(),
        &[
            "create-load-balancer",
            "--load-balancer-name",
            "third",
            "--listeners",
            &listener,
            "--availability-zones",
            "zone-a",
        ],
    );
    assert!(!run.success(), "aws create-load-balancer: {run:?}");
    assert!(
        run.stderr.contains("InvalidConfigurationRequest")
            && run.stderr.contains("already used by load balancer second"),
        "{run:?}"
    );

    // CreateLoadBalancerListeners on an existing load balancer.
    let mut add = one("LoadBalancerName", "second");
    add.extend(listener_params(clb.port()));
    let message = boto.expect_err(
        "CreateLoadBalancerListeners",
        &add,
        "InvalidConfigurationRequest",
        409,
    );
    assert!(message.contains("load balancer default"), "{message}");

    // The control API's own port.
    let mut add = one("LoadBalancerName", "second");
    add.extend(listener_params(clb.api_addr().port()));
    let message = boto.expect_err(
        "CreateLoadBalancerListeners",
        &add,
        "InvalidConfigurationRequest",
        409,
    );
    assert!(message.contains("control API"), "{message}");

    // Nothing changed: the flags' port still goes to its own instance only.
    assert_eq!(answered_at(clb.addr, 10), ["i-ap1"]);
    let d = boto.ok(
        "DescribeLoadBalancers",
        &one("LoadBalancerNames.0", "second"),
    );
    assert_eq!(
        d.len("LoadBalancerDescriptions.0.ListenerDescriptions"),
        1,
        "{d}"
    );
}

fn listener_params(port: u16) -> Vec<(String, String)> {
    listener(0, port, 80)
}

#[test]
fn with_a_pool_two_load_balancers_on_one_port_each_route_to_their_own_instances() {
    let pool = "127.0.3.0/29";
    let b1 = Backend::echo(IP1, "i-pa");
    let b2 = Backend::echo(IP2, "i-pb");
    let clb = clb_with_pool(
        pool,
        None,
        &[
            b1.instance("zone-a"),
            b2.instance("zone-a").expecting_healthy(false),
        ],
        &[],
        ENV,
    );
    // The flags' load balancer registers both; take i-pb back out so each LB has one.
    let mut boto = Boto::new(clb.api_addr());
    boto.ok(
        "DeregisterInstancesFromLoadBalancer",
        &with_instances("default", &["i-pb"]),
    );
    let port = clb.port();
    assert_eq!(clb.addr.ip(), pool_ip(pool, 0));

    boto.ok(
        "CreateLoadBalancer",
        &create_params("other", port, b2.addr.port(), &["zone-a"]),
    );
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("other", &["i-pb"]),
    );
    wait_health(&mut boto, "other", "i-pb", "InService", WAIT);
    let other = at(pool_ip(pool, 1), port);
    assert!(
        wait_until(SOON, || listening_at(other)),
        "{other} not listening"
    );

    // Each address reaches its own load balancer's instance, never the other's.
    assert_eq!(answered_at(clb.addr, 20), ["i-pa"]);
    assert_eq!(answered_at(other, 20), ["i-pb"]);
    // Nothing listens on that port of an address outside the pool.
    assert!(!listening_at(at(ip("127.0.0.1"), port)));

    // The status page says where each one is.
    assert_eq!(
        status_address(clb.api_addr(), "default").as_deref(),
        Some("127.0.3.1")
    );
    assert_eq!(
        status_address(clb.api_addr(), "other").as_deref(),
        Some("127.0.3.2")
    );
    // Deleting one leaves the other's port alone.
    boto.ok("DeleteLoadBalancer", &one("LoadBalancerName", "other"));
    assert!(
        wait_until(SOON, || !listening_at(other)),
        "{other} still listening"
    );
    assert_eq!(answered_at(clb.addr, 5), ["i-pa"]);
}

#[test]
fn restart_with_state_gives_every_load_balancer_the_same_address() {
    let pool = "127.0.3.8/29";
    let state = TempState::new("restart");
    let b1 = Backend::echo(IP1, "i-ra");
    let b2 = Backend::echo(IP2, "i-rb");
    let mut clb = clb_with_pool(
        pool,
        None,
        &[
            b1.instance("zone-a"),
            b2.instance("zone-a").expecting_healthy(false),
        ],
        &["--state", state.path()],
        ENV,
    );
    let mut boto = Boto::new(clb.api_addr());
    boto.ok(
        "DeregisterInstancesFromLoadBalancer",
        &with_instances("default", &["i-rb"]),
    );
    let port = clb.port();
    for name in ["gone", "kept"] {
        boto.ok(
            "CreateLoadBalancer",
            &create_params(name, port, b2.addr.port(), &["zone-a"]),
        );
    }
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("kept", &["i-rb"]),
    );
    // "kept" has the third address; the second one is free again once "gone" is deleted.
    boto.ok("DeleteLoadBalancer", &one("LoadBalancerName", "gone"));
    assert_eq!(
        status_address(clb.api_addr(), "kept").as_deref(),
        Some(pool_ip(pool, 2).to_string().as_str())
    );
    let saved = std::fs::read_to_string(&state.0).expect("state file");
    assert!(
        saved.contains(&format!("address {}", pool_ip(pool, 2))),
        "{saved}"
    );

    clb.restart();
    let mut boto = Boto::new(clb.api_addr());
    assert_eq!(
        status_address(clb.api_addr(), "default").as_deref(),
        Some(pool_ip(pool, 0).to_string().as_str())
    );
    assert_eq!(
        status_address(clb.api_addr(), "kept").as_deref(),
        Some(pool_ip(pool, 2).to_string().as_str())
    );
    wait_health(&mut boto, "kept", "i-rb", "InService", WAIT);
    wait_health(&mut boto, "default", "i-ra", "InService", WAIT);
    assert_eq!(answered_at(at(pool_ip(pool, 2), port), 10), ["i-rb"]);
    assert_eq!(answered_at(clb.addr, 10), ["i-ra"]);
    // A new load balancer does not take an address that is still someone's.
    boto.ok(
        "CreateLoadBalancer",
        &create_params("new", port, b2.addr.port(), &["zone-a"]),
    );
    assert_eq!(
        status_address(clb.api_addr(), "new").as_deref(),
        Some(pool_ip(pool, 1).to_string().as_str())
    );
}

#[test]
fn an_exhausted_pool_is_an_api_error_and_a_deleted_load_balancer_frees_its_address() {
    let pool = "127.0.3.17,127.0.3.18";
    let b1 = Backend::echo(IP1, "i-xa");
    let clb = clb_with_pool(pool, None, &[b1.instance("zone-a")], &[], ENV);
    let mut boto = Boto::new(clb.api_addr());
    let port = clb.port();
    boto.ok(
        "CreateLoadBalancer",
        &create_params("b", port, 80, &["zone-a"]),
    );
    let message = boto.expect_err(
        "CreateLoadBalancer",
        &create_params("c", port, 80, &["zone-a"]),
        "InvalidSubnet",
        400,
    );
    assert!(
        message.contains("Not enough IP space available in --address-pool 127.0.3.17,127.0.3.18"),
        "{message}"
    );
    boto.ok("DeleteLoadBalancer", &one("LoadBalancerName", "b"));
    boto.ok(
        "CreateLoadBalancer",
        &create_params("c", port, 80, &["zone-a"]),
    );
    let c = at(ip("127.0.3.18"), port);
    assert!(wait_until(SOON, || listening_at(c)), "{c} not listening");
}

#[test]
fn start_up_refuses_what_the_api_would_refuse() {
    // A state file that loads two load balancers on one port: made with a pool, then
    // started without it (the saved addresses are dropped, so both would share --bind).
    let pool = "127.0.3.24/29";
    let state = TempState::new("two-on-one");
    let b1 = Backend::echo(IP1, "i-sa");
    let port;
    {
        let clb = clb_with_pool(
            pool,
            None,
            &[b1.instance("zone-a")],
            &["--state", state.path()],
            ENV,
        );
        port = clb.port();
        let mut boto = Boto::new(clb.api_addr());
        for name in ["s1", "s2"] {
            boto.ok(
                "CreateLoadBalancer",
                &create_params(name, port, 80, &["zone-a"]),
            );
        }
    }
    let listener = format!("http:{}:http:80", free_port("127.0.0.1"));
    let line = assert_start_fails(
        &["-l", &listener, "--api", "off", "--state", state.path()],
        &[
            state.path(),
            "load balancer s1: ",
            &format!("LoadBalancerPort {port} is already used by load balancer default"),
        ],
    );
    assert!(line.contains("--address-pool"), "{line}");

    // The same file with a pool that no longer holds the saved addresses.
    assert_start_fails(
        &[
            "-l",
            &listener,
            "--api",
            "off",
            "--state",
            state.path(),
            "--address-pool",
            "127.0.3.40/29",
        ],
        &[
            "load balancer default: ",
            "127.0.3.25, which is not in --address-pool 127.0.3.40/29",
        ],
    );

    // With its pool again, a flags' load balancer on the saved ones' port gets an
    // address of its own and starts.
    let api = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let own = format!("http:{port}:http:80");
    let clb = Clb::start(&[
        "-l",
        &own,
        "--name",
        "flags",
        "--api",
        &api,
        "--state",
        state.path(),
        "--address-pool",
        pool,
    ]);
    assert_eq!(
        status_address(clb.api_addr(), "flags").as_deref(),
        Some(pool_ip(pool, 3).to_string().as_str()),
        "{}",
        status_page(clb.api_addr())
    );
    drop(clb);

    // Without a pool, the flags' load balancer on a port a saved one has.
    let plain = TempState::new("flags-vs-saved");
    let saved_port;
    {
        let clb = clb_api(&[b1.instance("zone-a")], &["--state", plain.path()]);
        let mut boto = Boto::new(clb.api_addr());
        saved_port = create_lb(&mut boto, "saved", 80, &["zone-a"]);
    }
    let on_saved = format!("http:{saved_port}:http:80");
    assert_start_fails(
        &[
            "-l",
            &on_saved,
            "--name",
            "flags",
            "--api",
            "off",
            "--state",
            plain.path(),
        ],
        &[
            "load balancer flags: ",
            &format!("LoadBalancerPort {saved_port} is already used by load balancer saved"),
        ],
    );

    // The flags' load balancer on the control API's port.
    let api_port = free_port("127.0.0.1");
    let on_api = format!("http:{api_port}:http:80");
    let api = format!("127.0.0.1:{api_port}");
    assert_start_fails(
        &["-l", &on_api, "--api", &api],
        &["load balancer default", "control API"],
    );
    // A pool this host has no address of.
    assert_start_fails(
        &[
            "-l",
            &on_api,
            "--api",
            "off",
            "--address-pool",
            "198.51.100.0/30",
        ],
        &[
            "--address-pool 198.51.100.0/30",
            "cannot listen on any of its addresses",
        ],
    );
    assert_refused(
        &["-l", &on_api, "--address-pool", "fd00::/120"],
        &["IPv6 pools are not supported"],
    );
}
