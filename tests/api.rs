//! The control API (issue 4; DESIGN §5; spec §3, §5, §16, §17) driven by the real
//! clients: boto3 (through `tests/api/boto_driver.py`, one Python process per test) and
//! the `aws` CLI, against the real `clb` binary with its control API on a free port.
//!
//! - `actions`, `registration`, `settings`, `policies`: every action, its answer and
//!   each error code with its HTTP status.
//! - `runtime`: what the answers do to traffic: new listeners, registration,
//!   deregistration with and without connection draining, instance health strings.
//! - `durable`: `--state` across a restart and across kill -9 during a burst of writes.
//! - `auth`: SigV4 with `--api-credentials`, and the loopback-only rule without it.
//! - `cli`: the README flow with `aws elb ...`, and the raw Query/XML shapes.
//! - `vpc`: subnets, security groups (and their effect on connections), and a repeated
//!   CreateLoadBalancer; `paging`: DescribeLoadBalancers pages.
//!
//! Health checks of API-created load balancers default to `TCP:<instance port>` every
//! 30 "seconds"; tests that need probes run clb with `CLB_HEALTH_TIME_UNIT_MS` so a
//! "second" is short, and poll with deadlines.

mod common;

#[path = "api/actions.rs"]
mod actions;
#[path = "api/addresses.rs"]
mod addresses;
#[path = "api/auth.rs"]
mod auth;
#[path = "api/cli.rs"]
mod cli;
#[path = "api/client.rs"]
mod client;
#[path = "api/durable.rs"]
mod durable;
#[path = "api/paging.rs"]
mod paging;
#[path = "api/policies.rs"]
mod policies;
#[path = "api/registration.rs"]
mod registration;
#[path = "api/runtime.rs"]
mod runtime;
#[path = "api/settings.rs"]
mod settings;
#[path = "api/vpc.rs"]
mod vpc;

use client::{Boto, Outcome, Reply};
use common::*;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A "second" of health-check time in most tests: the default 30 s interval of an
/// API-created load balancer is then 600 ms.
pub const UNIT_MS: &str = "20";
pub const ENV: &[(&str, &str)] = &[(HEALTH_TIME_UNIT_VAR, UNIT_MS)];
/// How long a test waits for something that should take well under a second.
pub const SOON: Duration = Duration::from_secs(1);
/// How long a test waits for something that takes a few health-check intervals.
pub const WAIT: Duration = Duration::from_secs(10);

/// Instance health strings (spec §3).
pub const REASON_ELB: &str = "ELB";
pub const REASON_INSTANCE: &str = "Instance";
pub const DESC_REGISTERING: &str = "Instance registration is still in progress.";
pub const DESC_NOT_REGISTERED: &str = "Instance is not currently registered with the LoadBalancer.";
pub const DESC_DEREGISTERING: &str = "Instance deregistration currently in progress.";
pub const DESC_ZONE_DISABLED: &str =
    "Instance is in the EC2 Availability Zone for which LoadBalancer is not configured to route traffic to.";

/// clb with the control API on, in front of `instances` (the flags' load balancer,
/// named "default" unless `extra` says `--name`), with the short health time unit.
pub fn clb_api(instances: &[Instance], extra: &[&str]) -> Clb {
    Clb::http_api(instances, extra, ENV)
}

/// The parameters of one HTTP→HTTP listener at list position `index`.
pub fn listener(index: usize, port: u16, instance_port: u16) -> Vec<(String, String)> {
    vec![
        (format!("Listeners.{index}.Protocol"), "HTTP".into()),
        (
            format!("Listeners.{index}.LoadBalancerPort"),
            port.to_string(),
        ),
        (format!("Listeners.{index}.InstanceProtocol"), "HTTP".into()),
        (
            format!("Listeners.{index}.InstancePort"),
            instance_port.to_string(),
        ),
    ]
}

/// CreateLoadBalancer parameters: one HTTP listener `port` → `instance_port`, `zones`.
pub fn create_params(
    name: &str,
    port: u16,
    instance_port: u16,
    zones: &[&str],
) -> Vec<(String, String)> {
    let mut params = vec![("LoadBalancerName".to_string(), name.to_string())];
    params.extend(listener(0, port, instance_port));
    for (i, zone) in zones.iter().enumerate() {
        params.push((format!("AvailabilityZones.{i}"), zone.to_string()));
    }
    params
}

/// Creates load balancer `name` on a free port of 127.0.0.1; returns that port.
pub fn create_lb(boto: &mut Boto, name: &str, instance_port: u16, zones: &[&str]) -> u16 {
    let port = free_port("127.0.0.1");
    let reply = boto.ok(
        "CreateLoadBalancer",
        &create_params(name, port, instance_port, zones),
    );
    assert_eq!(
        reply.get("DNSName"),
        format!("{}.elb.localhost", name.to_ascii_lowercase()),
        "CreateLoadBalancer answer:\n{reply}"
    );
    port
}

pub fn one(key: &str, value: &str) -> Vec<(String, String)> {
    vec![(key.to_string(), value.to_string())]
}

/// `LoadBalancerName` plus `Instances.N.InstanceId` for each of `ids`.
pub fn with_instances(lb: &str, ids: &[&str]) -> Vec<(String, String)> {
    let mut params = one("LoadBalancerName", lb);
    for (i, id) in ids.iter().enumerate() {
        params.push((format!("Instances.{i}.InstanceId"), id.to_string()));
    }
    params
}

/// The registered ids a Register/Deregister answer lists, sorted.
pub fn registered(reply: &Reply) -> Vec<String> {
    reply.field_of_each("Instances", "InstanceId")
}

/// (State, ReasonCode, Description) of one instance, asked for explicitly.
pub fn health(boto: &mut Boto, lb: &str, id: &str) -> (String, String, String) {
    let reply = boto.ok("DescribeInstanceHealth", &with_instances(lb, &[id]));
    assert_eq!(
        reply.len("InstanceStates"),
        1,
        "DescribeInstanceHealth {id}:\n{reply}"
    );
    assert_eq!(
        reply.get("InstanceStates.0.InstanceId"),
        id,
        "answer:\n{reply}"
    );
    (
        reply.get("InstanceStates.0.State").to_string(),
        reply.get("InstanceStates.0.ReasonCode").to_string(),
        reply.get("InstanceStates.0.Description").to_string(),
    )
}

pub fn triple(state: &str, reason: &str, description: &str) -> (String, String, String) {
    (state.into(), reason.into(), description.into())
}

/// Polls DescribeInstanceHealth until `id` is `state`; panics with the last answer
/// after `within`.
pub fn wait_health(boto: &mut Boto, lb: &str, id: &str, state: &str, within: Duration) {
    let mut last = None;
    let reached = wait_until(within, || {
        let now = health(boto, lb, id);
        let done = now.0 == state;
        last = Some(now);
        done
    });
    assert!(
        reached,
        "{id} in {lb} not {state} within {within:?}; last: {last:?}"
    );
}

/// The ids DescribeInstanceHealth lists without an instance list, sorted.
pub fn listed_health(boto: &mut Boto, lb: &str) -> Vec<String> {
    boto.ok("DescribeInstanceHealth", &one("LoadBalancerName", lb))
        .field_of_each("InstanceStates", "InstanceId")
}

pub fn lb_addr(port: u16) -> SocketAddr {
    SocketAddr::new(ip("127.0.0.1"), port)
}

pub fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Polls until `GET path` through port `port` answers 200 from instance `name`.
pub fn wait_routed_to(port: u16, name: &str, within: Duration) {
    let mut last = String::new();
    let ok = wait_until(within, || {
        let Ok(stream) = TcpStream::connect_timeout(&lb_addr(port), Duration::from_millis(200))
        else {
            last = "connect refused".into();
            return false;
        };
        drop(stream);
        let r = Client::connect(lb_addr(port)).request(&get_close("/wait"));
        last = format!("{} from {:?}", r.status_line, r.instance());
        r.status == 200 && r.instance() == Some(name)
    });
    assert!(
        ok,
        "port {port} did not route to {name} within {within:?}; last: {last}"
    );
}

/// Asserts `outcome` is the error `code` with HTTP `status`.
pub fn assert_code(outcome: &Outcome, code: &str, status: u16) {
    match outcome {
        Outcome::Err(e) if e.code == code && e.status == status => {}
        other => panic!("expected {code} ({status}), got {other:?}"),
    }
}
