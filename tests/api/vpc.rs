//! Issue 12 item 3A through boto3: Subnets and SecurityGroups as ELB shows them, the
//! security groups' effect on real connections from 127.0.0.x sources, a repeated
//! CreateLoadBalancer (paging is in `paging`), and all of it across a
//! restart with `--state` (also from a state file written before these existed).

use crate::client::{Boto, Reply};
use crate::common::sources::{answer_from, served_from};
use crate::common::*;
use crate::*;
use std::net::SocketAddr;

const SUBNETS: &[&str] = &[
    "--subnet",
    "subnet-a=zone-a",
    "--subnet",
    "subnet-a2=zone-a",
    "--subnet",
    "subnet-b=zone-b",
];
/// sg-two admits 127.0.0.2, sg-three 127.0.0.3, sg-wide every loopback address.
const GROUPS: &[&str] = &[
    "--security-group",
    "sg-two=127.0.0.2",
    "--security-group",
    "sg-three=127.0.0.3/32",
    "--security-group",
    "sg-wide=127.0.0.0/8",
];

fn flags<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = SUBNETS.to_vec();
    all.extend_from_slice(GROUPS);
    all.extend_from_slice(extra);
    all
}

/// CreateLoadBalancer of one HTTP listener on a free port with these subnets and groups.
fn create_vpc_params(
    name: &str,
    port: u16,
    subnets: &[&str],
    groups: &[&str],
) -> Vec<(String, String)> {
    let mut params = create_params(name, port, 8081, &[]);
    for (i, s) in subnets.iter().enumerate() {
        params.push((format!("Subnets.{i}"), s.to_string()));
    }
    for (i, g) in groups.iter().enumerate() {
        params.push((format!("SecurityGroups.{i}"), g.to_string()));
    }
    params
}

fn describe(boto: &mut Boto, lb: &str) -> Reply {
    boto.ok("DescribeLoadBalancers", &one("LoadBalancerNames.0", lb))
}

const D: &str = "LoadBalancerDescriptions.0";

fn subnets_of(boto: &mut Boto, lb: &str) -> (Vec<String>, Vec<String>) {
    let d = describe(boto, lb);
    (
        d.strings(&format!("{D}.Subnets")),
        d.strings(&format!("{D}.AvailabilityZones")),
    )
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn subnets_show_under_subnets_and_their_zones_under_availability_zones() {
    let clb = clb_api(&[], &flags(&[]));
    let mut boto = Boto::new(clb.api_addr());
    let port = free_port("127.0.0.1");
    boto.ok(
        "CreateLoadBalancer",
        &create_vpc_params("vpc", port, &["subnet-a"], &[]),
    );
    assert_eq!(
        subnets_of(&mut boto, "vpc"),
        (strings(&["subnet-a"]), strings(&["zone-a"]))
    );

    // Attach answers the subnets now attached; an unmapped id is its own zone.
    let r = boto.ok(
        "AttachLoadBalancerToSubnets",
        &[
            ("LoadBalancerName", "vpc"),
            ("Subnets.0", "subnet-b"),
            ("Subnets.1", "subnet-own"),
        ],
    );
    assert_eq!(r.strings("Subnets"), ["subnet-a", "subnet-b", "subnet-own"]);
    assert_eq!(
        subnets_of(&mut boto, "vpc"),
        (
            strings(&["subnet-a", "subnet-b", "subnet-own"]),
            strings(&["zone-a", "zone-b", "subnet-own"])
        )
    );
    // One subnet per zone (spec §14.2).
    boto.expect_err(
        "AttachLoadBalancerToSubnets",
        &[("LoadBalancerName", "vpc"), ("Subnets.0", "subnet-a2")],
        "InvalidConfigurationRequest",
        409,
    );
    boto.expect_err(
        "AttachLoadBalancerToSubnets",
        &[("LoadBalancerName", "vpc"), ("Subnets.0", "not a subnet")],
        "SubnetNotFound",
        400,
    );

    // Detach answers what is left, and its zone goes with it.
    let r = boto.ok(
        "DetachLoadBalancerFromSubnets",
        &[
            ("LoadBalancerName", "vpc"),
            ("Subnets.0", "subnet-a"),
            ("Subnets.1", "subnet-own"),
        ],
    );
    assert_eq!(r.strings("Subnets"), ["subnet-b"]);
    assert_eq!(
        subnets_of(&mut boto, "vpc"),
        (strings(&["subnet-b"]), strings(&["zone-b"]))
    );
    // Never the last one.
    boto.expect_err(
        "DetachLoadBalancerFromSubnets",
        &[("LoadBalancerName", "vpc"), ("Subnets.0", "subnet-b")],
        "ValidationError",
        400,
    );
    boto.expect_err(
        "AttachLoadBalancerToSubnets",
        &[("LoadBalancerName", "no-such"), ("Subnets.0", "subnet-b")],
        "LoadBalancerNotFound",
        400,
    );
}

#[test]
fn security_groups_are_attached_described_and_unknown_ids_refused() {
    let clb = clb_api(&[], &flags(&[]));
    let mut boto = Boto::new(clb.api_addr());
    boto.ok(
        "CreateLoadBalancer",
        &create_vpc_params("sg", free_port("127.0.0.1"), &["subnet-a"], &["sg-two"]),
    );
    assert_eq!(
        describe(&mut boto, "sg").strings(&format!("{D}.SecurityGroups")),
        ["sg-two"]
    );
    let r = boto.ok(
        "ApplySecurityGroupsToLoadBalancer",
        &[
            ("LoadBalancerName", "sg"),
            ("SecurityGroups.0", "sg-three"),
            ("SecurityGroups.1", "sg-wide"),
        ],
    );
    assert_eq!(r.strings("SecurityGroups"), ["sg-three", "sg-wide"]);
    assert_eq!(
        describe(&mut boto, "sg").strings(&format!("{D}.SecurityGroups")),
        ["sg-three", "sg-wide"]
    );

    // An id no --security-group defines, on either action; nothing changes.
    boto.expect_err(
        "ApplySecurityGroupsToLoadBalancer",
        &[("LoadBalancerName", "sg"), ("SecurityGroups.0", "sg-nope")],
        "InvalidSecurityGroup",
        400,
    );
    assert_eq!(
        describe(&mut boto, "sg").strings(&format!("{D}.SecurityGroups")),
        ["sg-three", "sg-wide"]
    );
    boto.expect_err(
        "CreateLoadBalancer",
        &create_vpc_params(
            "sg-bad",
            free_port("127.0.0.1"),
            &["subnet-a"],
            &["sg-nope"],
        ),
        "InvalidSecurityGroup",
        400,
    );
    boto.expect_err(
        "DescribeLoadBalancers",
        &one("LoadBalancerNames.0", "sg-bad"),
        "LoadBalancerNotFound",
        400,
    );
    boto.expect_err(
        "ApplySecurityGroupsToLoadBalancer",
        &one("LoadBalancerName", "sg"),
        "MissingParameter",
        400,
    );
    boto.expect_err(
        "ApplySecurityGroupsToLoadBalancer",
        &[
            ("LoadBalancerName", "no-such"),
            ("SecurityGroups.0", "sg-nope"),
        ],
        "LoadBalancerNotFound",
        400,
    );
}

/// Polls until a request from `from` is served (`true`) or closed at accept (`false`).
fn wait_served(from: &str, to: SocketAddr, served: bool) {
    let mut last = String::new();
    let ok = wait_until(SOON * 5, || {
        last = answer_from(from, to);
        last.starts_with("HTTP/1.1 200") == served
    });
    assert!(
        ok,
        "from {from}: expected {}, last answer {last:?}",
        if served { "served" } else { "closed" }
    );
}

/// ApplySecurityGroupsToLoadBalancer takes effect on the next connection, without a
/// restart; `--allow` and the groups must both admit a source.
#[test]
fn security_groups_close_other_sources_at_accept_and_changes_apply_at_once() {
    let backend = Backend::echo(IP1, "i-sg");
    // --allow admits 127.0.0.0-3; sg-wide admits 127.0.0.4 but --allow does not.
    let clb = clb_api(
        &[backend.instance("zone-a")],
        &flags(&["--allow", "127.0.0.0/30"]),
    );
    let mut boto = Boto::new(clb.api_addr());
    let apply = |boto: &mut Boto, groups: &[&str]| {
        let mut params = one("LoadBalancerName", "default");
        for (i, g) in groups.iter().enumerate() {
            params.push((format!("SecurityGroups.{i}"), g.to_string()));
        }
        boto.ok("ApplySecurityGroupsToLoadBalancer", &params);
    };
    // No group yet: every source --allow admits is served.
    assert!(served_from("127.0.0.2", clb.addr));
    assert!(served_from("127.0.0.3", clb.addr));

    apply(&mut boto, &["sg-two"]);
    wait_served("127.0.0.3", clb.addr, false);
    assert!(served_from("127.0.0.2", clb.addr));
    let before = backend.requests();
    for _ in 0..3 {
        assert_eq!(answer_from("127.0.0.3", clb.addr), "");
    }
    assert_eq!(
        backend.requests(),
        before,
        "a closed source reached the instance"
    );

    apply(&mut boto, &["sg-three"]);
    wait_served("127.0.0.2", clb.addr, false);
    assert!(served_from("127.0.0.3", clb.addr));

    apply(&mut boto, &["sg-two", "sg-three"]);
    wait_served("127.0.0.2", clb.addr, true);
    assert!(served_from("127.0.0.3", clb.addr));

    // The combination: sg-wide admits 127.0.0.4, --allow does not.
    apply(&mut boto, &["sg-wide"]);
    wait_served("127.0.0.1", clb.addr, true);
    assert_eq!(answer_from("127.0.0.4", clb.addr), "");
    let refused = scrape_metrics(clb.api_addr())
        .lines()
        .find_map(|l| l.strip_prefix("clb_connections_refused_by_allow_list "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(refused.is_some_and(|n| n >= 5), "refused: {refused:?}");
}

#[test]
fn create_repeated_with_the_same_configuration_answers_the_dns_name() {
    let clb = clb_api(&[], &flags(&[]));
    let mut boto = Boto::new(clb.api_addr());
    let port = free_port("127.0.0.1");
    let first = create_vpc_params("again", port, &["subnet-a", "subnet-b"], &["sg-two"]);
    assert_eq!(
        boto.ok("CreateLoadBalancer", &first).get("DNSName"),
        "again.elb.localhost"
    );
    // The same again, lists in another order: the same answer, no change.
    let same = create_vpc_params("again", port, &["subnet-b", "subnet-a"], &["sg-two"]);
    assert_eq!(
        boto.ok("CreateLoadBalancer", &same).get("DNSName"),
        "again.elb.localhost"
    );
    assert_eq!(
        boto.ok("DescribeLoadBalancers", &[] as &[(&str, &str)])
            .len("LoadBalancerDescriptions"),
        2
    );
    // The zones of the subnets given as AvailabilityZones too: still the same.
    let mut with_zones = first.clone();
    with_zones.extend(one("AvailabilityZones.0", "zone-a"));
    boto.ok("CreateLoadBalancer", &with_zones);

    let different = [
        create_vpc_params(
            "again",
            free_port("127.0.0.1"),
            &["subnet-a", "subnet-b"],
            &["sg-two"],
        ),
        create_vpc_params("again", port, &["subnet-a"], &["sg-two"]),
        create_vpc_params("again", port, &["subnet-a", "subnet-b"], &["sg-three"]),
        create_vpc_params("again", port, &["subnet-a", "subnet-b"], &[]),
    ];
    for params in different {
        boto.expect_err(
            "CreateLoadBalancer",
            &params,
            "DuplicateLoadBalancerName",
            400,
        );
    }
    let mut internal = first.clone();
    internal.extend(one("Scheme", "internal"));
    boto.expect_err(
        "CreateLoadBalancer",
        &internal,
        "DuplicateLoadBalancerName",
        400,
    );
    // A listener added since makes the original call a different configuration.
    boto.ok(
        "CreateLoadBalancerListeners",
        &[
            vec![("LoadBalancerName".to_string(), "again".to_string())],
            listener(0, free_port("127.0.0.1"), 8082),
        ]
        .concat(),
    );
    boto.expect_err(
        "CreateLoadBalancer",
        &first,
        "DuplicateLoadBalancerName",
        400,
    );
}

/// A state file directory no other test uses, removed on drop.
struct TempState(std::path::PathBuf);

impl TempState {
    fn new(tag: &str) -> TempState {
        let dir = std::env::temp_dir().join(format!("clb-vpc-state-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create state dir");
        TempState(dir)
    }

    fn file(&self) -> String {
        self.0.join("state").to_string_lossy().into_owned()
    }
}

impl Drop for TempState {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn subnets_and_security_groups_survive_a_restart() {
    let dir = TempState::new("restart");
    let state = dir.file();
    let backend = Backend::echo(IP1, "i-st");
    let mut clb = clb_api(&[backend.instance("zone-a")], &flags(&["--state", &state]));
    let mut boto = Boto::new(clb.api_addr());
    let port = free_port("127.0.0.1");
    boto.ok(
        "CreateLoadBalancer",
        &create_vpc_params("kept", port, &["subnet-a", "subnet-b"], &["sg-two"]),
    );
    boto.ok(
        "ApplySecurityGroupsToLoadBalancer",
        &[
            ("LoadBalancerName", "default"),
            ("SecurityGroups.0", "sg-three"),
        ],
    );
    wait_served("127.0.0.2", clb.addr, false);
    drop(boto);

    clb.restart();
    let mut boto = Boto::new(clb.api_addr());
    let d = describe(&mut boto, "kept");
    assert_eq!(d.strings(&format!("{D}.Subnets")), ["subnet-a", "subnet-b"]);
    assert_eq!(
        d.strings(&format!("{D}.AvailabilityZones")),
        ["zone-a", "zone-b"]
    );
    assert_eq!(d.strings(&format!("{D}.SecurityGroups")), ["sg-two"]);
    assert_eq!(
        describe(&mut boto, "default").strings(&format!("{D}.SecurityGroups")),
        ["sg-three"]
    );
    // And in force from the first connection after the restart.
    assert_eq!(answer_from("127.0.0.2", clb.addr), "");
    assert!(served_from("127.0.0.3", clb.addr));
    // The same call again is still a repeat, not a duplicate.
    boto.ok(
        "CreateLoadBalancer",
        &create_vpc_params("kept", port, &["subnet-a", "subnet-b"], &["sg-two"]),
    );
}

/// A state file written before subnets and security groups existed loads: its load
/// balancers have none, and they can be added.
#[test]
fn a_state_file_from_before_subnets_and_groups_loads() {
    let dir = TempState::new("old");
    let state = dir.file();
    let port = free_port("127.0.0.1");
    let old = format!(
        "clb-state 1\n\
         lb old 1700000000000 internet-facing\n\
         listener HTTP {port} HTTP 8081\n\
         zone zone-a\n\
         health TCP:8081 30 5 10 2\n\
         attributes false 60 false 300 defensive\n\
         end\n"
    );
    std::fs::write(&state, old).expect("write the old state file");
    let clb = clb_api(&[], &flags(&["--state", &state]));
    let mut boto = Boto::new(clb.api_addr());
    let d = describe(&mut boto, "old");
    assert_eq!(d.len(&format!("{D}.Subnets")), 0, "{d}");
    assert_eq!(d.len(&format!("{D}.SecurityGroups")), 0, "{d}");
    assert_eq!(d.strings(&format!("{D}.AvailabilityZones")), ["zone-a"]);
    boto.ok(
        "ApplySecurityGroupsToLoadBalancer",
        &[("LoadBalancerName", "old"), ("SecurityGroups.0", "sg-wide")],
    );
    let written = std::fs::read_to_string(&state).expect("state file");
    assert!(written.contains("security-group sg-wide"), "{written}");
}

/// The `aws` CLI pages by hand (`--page-size` turns its own paginator off) following
/// NextMarker, and its security group and subnet commands answer.
#[test]
fn the_aws_cli_pages_and_applies_security_groups() {
    let clb = clb_api(&[], &flags(&[]));
    let mut boto = Boto::new(clb.api_addr());
    for name in ["cli-b", "cli-a"] {
        create_lb(&mut boto, name, 8081, &["zone-a"]);
    }
    let mut names = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..5 {
        let mut args = vec![
            "describe-load-balancers",
            "--page-size",
            "1",
            "--query",
            "[LoadBalancerDescriptions[0].LoadBalancerName, NextMarker]",
            "--output",
            "text",
        ];
        if let Some(m) = &marker {
            args.extend(["--marker", m.as_str()]);
        }
        let run = crate::client::aws(clb.api_addr(), &args);
        assert!(run.success(), "{run:?}");
        let fields: Vec<String> = run.stdout.split_whitespace().map(String::from).collect();
        assert_eq!(fields.len(), 2, "{run:?}");
        names.push(fields[0].clone());
        if fields[1] == "None" {
            break;
        }
        marker = Some(fields[1].clone());
    }
    assert_eq!(names, ["cli-a", "cli-b", "default"]);

    let run = crate::client::aws(
        clb.api_addr(),
        &[
            "apply-security-groups-to-load-balancer",
            "--load-balancer-name",
            "cli-a",
            "--security-groups",
            "sg-two",
            "sg-wide",
            "--output",
            "text",
        ],
    );
    assert!(run.success(), "{run:?}");
    assert!(
        run.stdout.contains("sg-two") && run.stdout.contains("sg-wide"),
        "{run:?}"
    );
    let run = crate::client::aws(
        clb.api_addr(),
        &[
            "apply-security-groups-to-load-balancer",
            "--load-balancer-name",
            "cli-a",
            "--security-groups",
            "sg-unknown",
        ],
    );
    assert!(
        !run.success() && run.stderr.contains("InvalidSecurityGroup"),
        "{run:?}"
    );
    let run = crate::client::aws(
        clb.api_addr(),
        &[
            "attach-load-balancer-to-subnets",
            "--load-balancer-name",
            "cli-a",
            "--subnets",
            "subnet-b",
            "--output",
            "text",
        ],
    );
    assert!(run.success() && run.stdout.contains("subnet-b"), "{run:?}");
}
