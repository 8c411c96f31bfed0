//! `--state FILE` (issue 4 §5): what the API changed is back after a restart, and a
//! kill -9 in the middle of a burst of writes loses no change whose answer the client
//! got, and leaves a file clb loads.

use crate::client::{Boto, Outcome, Reply};
use crate::common::*;
use crate::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// A state file path no other test uses; removed (with any leftovers) on drop.
struct StatePath(PathBuf);

impl StatePath {
    fn new(tag: &str) -> StatePath {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "clb-api-state-{}-{}-{tag}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create state dir");
        StatePath(dir.join("state"))
    }

    fn as_str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for StatePath {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Everything the API says about load balancer `lb`: its description, attributes and
/// tags, flattened into one answer.
fn snapshot(boto: &mut Boto, lb: &str) -> Reply {
    let mut all = Reply(Default::default());
    let d = boto.ok("DescribeLoadBalancers", &one("LoadBalancerNames.0", lb));
    let a = boto.ok(
        "DescribeLoadBalancerAttributes",
        &one("LoadBalancerName", lb),
    );
    let t = boto.ok("DescribeTags", &one("LoadBalancerNames.0", lb));
    for (prefix, reply) in [("describe", d), ("attributes", a), ("tags", t)] {
        for (k, v) in reply.0 {
            all.0.insert(format!("{prefix}.{k}"), v);
        }
    }
    all
}

#[test]
fn state_brings_back_load_balancers_registrations_checks_attributes_and_tags() {
    let state = StatePath::new("restart");
    let b1 = Backend::echo(IP1, "i-st1");
    let b2 = Backend::echo(IP2, "i-st2");
    let mut clb = clb_api(
        &[b1.instance("zone-a"), b2.instance("zone-b")],
        &["--state", state.as_str()],
    );
    let mut boto = Boto::new(clb.api_addr());
    let port = create_lb(&mut boto, "keep", b1.addr.port(), &["zone-a"]);
    let port2 = free_port("127.0.0.1");
    let mut add = one("LoadBalancerName", "keep");
    add.extend(listener(0, port2, b1.addr.port()));
    boto.ok("CreateLoadBalancerListeners", &add);
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("keep", &["i-st1", "i-st2"]),
    );
    let direct = b2.addr.to_string();
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("keep", &[&direct]),
    );
    boto.ok(
        "ConfigureHealthCheck",
        &[
            ("LoadBalancerName", "keep"),
            ("HealthCheck.Target", "TCP:80"),
            ("HealthCheck.Interval", "20"),
            ("HealthCheck.Timeout", "4"),
            ("HealthCheck.UnhealthyThreshold", "3"),
            ("HealthCheck.HealthyThreshold", "5"),
        ],
    );
    let a = "LoadBalancerAttributes";
    boto.ok(
        "ModifyLoadBalancerAttributes",
        &[
            ("LoadBalancerName", "keep"),
            (&format!("{a}.CrossZoneLoadBalancing.Enabled"), "true"),
            (&format!("{a}.ConnectionDraining.Enabled"), "true"),
            (&format!("{a}.ConnectionDraining.Timeout"), "45"),
            (&format!("{a}.ConnectionSettings.IdleTimeout"), "99"),
            (
                &format!("{a}.AdditionalAttributes.0.Key"),
                "elb.http.desyncmitigationmode",
            ),
            (&format!("{a}.AdditionalAttributes.0.Value"), "monitor"),
        ],
    );
    boto.ok(
        "AddTags",
        &[
            ("LoadBalancerNames.0", "keep"),
            ("Tags.0.Key", "env"),
            ("Tags.0.Value", "prod"),
            ("Tags.1.Key", "empty"),
            ("Tags.1.Value", ""),
        ],
    );
    boto.ok(
        "EnableAvailabilityZonesForLoadBalancer",
        &[
            ("LoadBalancerName", "keep"),
            ("AvailabilityZones.0", "zone-b"),
        ],
    );
    create_lb(&mut boto, "gone", b1.addr.port(), &["zone-a"]);
    boto.ok("DeleteLoadBalancer", &one("LoadBalancerName", "gone"));
    wait_routed_to(port, "i-st1", WAIT);
    let before = snapshot(&mut boto, "keep");
    let names_before = boto
        .ok("DescribeLoadBalancers", &[] as &[(&str, &str)])
        .field_of_each("LoadBalancerDescriptions", "LoadBalancerName");
    assert_eq!(names_before, ["default", "keep"]);
    drop(boto);

    clb.restart();
    let mut boto = Boto::new(clb.api_addr());
    let names_after = boto
        .ok("DescribeLoadBalancers", &[] as &[(&str, &str)])
        .field_of_each("LoadBalancerDescriptions", "LoadBalancerName");
    assert_eq!(
        names_after, names_before,
        "load balancers after the restart"
    );
    let after = snapshot(&mut boto, "keep");
    let differences: Vec<String> = before
        .0
        .keys()
        .chain(after.0.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| before.opt(k) != after.opt(k))
        .map(|k| format!("{k}: {:?} -> {:?}", before.opt(k), after.opt(k)))
        .collect();
    assert!(
        differences.is_empty(),
        "after the restart, the API says otherwise:\n{}",
        differences.join("\n")
    );
    // And it routes again, on both listeners.
    wait_routed_to(port, "i-st1", WAIT);
    wait_routed_to(port2, "i-st1", WAIT);
}

/// Flat boto3 parameters.
type Params = Vec<(String, String)>;

/// One acknowledged write of the burst and how to check it after the restart.
#[derive(Clone, Debug)]
enum Change {
    Created(String),
    Tagged(String, String),
    Idle(String, String),
}

#[test]
fn kill_9_during_a_burst_of_writes_keeps_every_acknowledged_change() {
    let state = StatePath::new("burst");
    let mut clb = clb_api(&[], &["--state", state.as_str()]);
    let api = clb.api_addr();
    let acked: Arc<Mutex<Vec<Change>>> = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let acked = Arc::clone(&acked);
            // Ports picked here: free_port is the harness's, shared by this process.
            let ports: Vec<u16> = (0..9).map(|_| free_port("127.0.0.1")).collect();
            thread::spawn(move || {
                let mut boto = Boto::new(api);
                for (i, port) in ports.iter().enumerate() {
                    let name = format!("burst-{t}-{i}");
                    let writes: Vec<(&str, Params, Change)> = vec![
                        (
                            "CreateLoadBalancer",
                            create_params(&name, *port, 8080, &["zone-a"]),
                            Change::Created(name.clone()),
                        ),
                        (
                            "AddTags",
                            vec![
                                ("LoadBalancerNames.0".into(), name.clone()),
                                ("Tags.0.Key".into(), "seq".into()),
                                ("Tags.0.Value".into(), format!("{t}-{i}")),
                            ],
                            Change::Tagged(name.clone(), format!("{t}-{i}")),
                        ),
                        (
                            "ModifyLoadBalancerAttributes",
                            vec![
                                ("LoadBalancerName".into(), name.clone()),
                                (
                                    "LoadBalancerAttributes.ConnectionSettings.IdleTimeout".into(),
                                    (100 + i).to_string(),
                                ),
                            ],
                            Change::Idle(name.clone(), (100 + i).to_string()),
                        ),
                    ];
                    for (op, params, change) in writes {
                        match boto.call(op, &params) {
                            Outcome::Ok(_) => acked.lock().expect("acked lock").push(change),
                            // clb died under it: nothing after this can be acknowledged.
                            _ => return,
                        }
                    }
                }
            })
        })
        .collect();
    let mid_burst = wait_until(WAIT, || acked.lock().expect("acked lock").len() >= 15);
    assert!(mid_burst, "the burst did not get going: {:?}", acked.lock());
    clb.kill_now();
    for w in writers {
        w.join().expect("writer thread");
    }
    let acked = acked.lock().expect("acked lock").clone();
    assert!(
        acked.len() < 54,
        "every write was acknowledged before the kill: the kill was not during the burst"
    );

    // The file loads (restart panics if clb exits), and every acknowledged change is in.
    clb.restart();
    let mut boto = Boto::new(clb.api_addr());
    let names = boto
        .ok("DescribeLoadBalancers", &[] as &[(&str, &str)])
        .field_of_each("LoadBalancerDescriptions", "LoadBalancerName");
    for change in &acked {
        match change {
            Change::Created(name) => {
                assert!(names.contains(name), "{name} acknowledged, lost: {names:?}")
            }
            Change::Tagged(name, value) => {
                let t = boto.ok("DescribeTags", &one("LoadBalancerNames.0", name));
                let at = t.find("TagDescriptions.0.Tags", "Key", "seq");
                let got = at.map(|at| t.get(&format!("{at}.Value")).to_string());
                assert_eq!(got.as_deref(), Some(value.as_str()), "tag of {name}:\n{t}");
            }
            Change::Idle(name, value) => {
                let a = boto.ok(
                    "DescribeLoadBalancerAttributes",
                    &one("LoadBalancerName", name),
                );
                assert_eq!(
                    a.get("LoadBalancerAttributes.ConnectionSettings.IdleTimeout"),
                    value,
                    "idle timeout of {name}"
                );
            }
        }
    }
    eprintln!("{} acknowledged changes survived kill -9", acked.len());
    // The restarted clb still takes writes, and they persist as well.
    create_lb(&mut boto, "after-crash", 8080, &["zone-a"]);
}

/// README: once the state file defines the flags' load balancer, the state file wins
/// over the same flags at the next start.
#[test]
fn api_changes_to_the_flags_load_balancer_win_over_the_flags_at_restart() {
    let state = StatePath::new("flags");
    let b1 = Backend::echo(IP1, "i-fl1");
    let b2 = Backend::echo(IP2, "i-fl2");
    let mut clb = clb_api(
        &[b1.instance("zone-a"), b2.instance("zone-a")],
        &["--state", state.as_str()],
    );
    let mut boto = Boto::new(clb.api_addr());
    boto.ok(
        "DeregisterInstancesFromLoadBalancer",
        &with_instances("default", &["i-fl2"]),
    );
    boto.ok(
        "ModifyLoadBalancerAttributes",
        &[
            ("LoadBalancerName", "default"),
            (
                "LoadBalancerAttributes.ConnectionSettings.IdleTimeout",
                "77",
            ),
        ],
    );
    drop(boto);
    clb.restart();
    let mut boto = Boto::new(clb.api_addr());
    assert_eq!(listed_health(&mut boto, "default"), ["i-fl1"]);
    let a = boto.ok(
        "DescribeLoadBalancerAttributes",
        &one("LoadBalancerName", "default"),
    );
    assert_eq!(
        a.get("LoadBalancerAttributes.ConnectionSettings.IdleTimeout"),
        "77",
        "{a}"
    );
    // And traffic follows the state file: only i-fl1 answers.
    let before = b2.requests();
    for i in 0..6 {
        let r = clb.connect().request(&get_close(&format!("/after/{i}")));
        assert_eq!(
            (r.status, r.instance()),
            (200, Some("i-fl1")),
            "{}",
            r.status_line
        );
    }
    assert_eq!(
        b2.requests(),
        before,
        "a deregistered instance got requests after restart"
    );
}

/// README: an instance still draining when clb dies is saved as deregistered.
#[test]
fn an_instance_draining_at_a_crash_comes_back_deregistered() {
    let state = StatePath::new("draining");
    let slow = Backend::start(
        IP1,
        "i-drn",
        Behavior::Delay(std::time::Duration::from_secs(5)),
    );
    let mut clb = clb_api(&[slow.instance("zone-a")], &["--state", state.as_str()]);
    let mut boto = Boto::new(clb.api_addr());
    let port = create_lb(&mut boto, "drn", slow.addr.port(), &["zone-a"]);
    boto.ok(
        "ModifyLoadBalancerAttributes",
        &[
            ("LoadBalancerName", "drn"),
            ("LoadBalancerAttributes.ConnectionDraining.Enabled", "true"),
            ("LoadBalancerAttributes.ConnectionDraining.Timeout", "60"),
        ],
    );
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("drn", &["i-drn"]),
    );
    wait_health(&mut boto, "drn", "i-drn", "InService", SOON);
    let mut client = Client::connect(lb_addr(port));
    client.send(get("/slow").as_bytes());
    assert!(
        wait_until(SOON, || slow.requests() == 1),
        "the slow request did not arrive"
    );
    boto.ok(
        "DeregisterInstancesFromLoadBalancer",
        &with_instances("drn", &["i-drn"]),
    );
    assert_eq!(health(&mut boto, "drn", "i-drn").2, DESC_DEREGISTERING);
    drop(boto);
    clb.restart();
    let mut boto = Boto::new(clb.api_addr());
    assert!(listed_health(&mut boto, "drn").is_empty());
    assert_eq!(
        health(&mut boto, "drn", "i-drn"),
        triple("OutOfService", REASON_INSTANCE, DESC_NOT_REGISTERED)
    );
}
