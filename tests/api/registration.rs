//! Registration through boto3: instance ids resolved through the `--instance`
//! inventory, register and deregister answers and errors; and a missing required
//! parameter, for several actions.

use crate::client::Boto;
use crate::common::*;
use crate::*;

#[test]
fn register_and_deregister_resolve_ids_through_the_inventory() {
    let b1 = Backend::echo(IP1, "i-inv1");
    let b2 = Backend::echo(IP2, "i-inv2");
    let b3 = Backend::echo(IP3, "b3");
    let clb = clb_api(&[b1.instance("zone-a"), b2.instance("zone-a")], &[]);
    let mut boto = Boto::new(clb.api_addr());
    create_lb(&mut boto, "reg", b1.addr.port(), &["zone-a"]);

    // An inventory id works for any load balancer, not only the flags' one.
    let r = boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("reg", &["i-inv1"]),
    );
    assert_eq!(registered(&r), ["i-inv1"], "{r}");
    // An id that is itself IP:PORT is its own address.
    let direct = b3.addr.to_string();
    let r = boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("reg", &[&direct]),
    );
    let mut want = vec!["i-inv1".to_string(), direct.clone()];
    want.sort();
    assert_eq!(registered(&r), want, "{r}");
    // Registering again is a no-op.
    let r = boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("reg", &["i-inv1"]),
    );
    assert_eq!(registered(&r), want, "{r}");
    let described = boto.ok("DescribeLoadBalancers", &one("LoadBalancerNames.0", "reg"));
    assert_eq!(
        described.field_of_each("LoadBalancerDescriptions.0.Instances", "InstanceId"),
        want
    );

    for bad in ["i-unknown", "not an address", "127.0.0.1", "host:notaport"] {
        boto.expect_err(
            "RegisterInstancesWithLoadBalancer",
            &with_instances("reg", &[bad]),
            "InvalidInstance",
            400,
        );
    }
    boto.expect_err(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("nope", &["i-inv1"]),
        "LoadBalancerNotFound",
        400,
    );

    let r = boto.ok(
        "DeregisterInstancesFromLoadBalancer",
        &with_instances("reg", &["i-inv1"]),
    );
    assert_eq!(registered(&r), [direct.as_str()], "{r}");
    // Not registered (any more, or ever) with this load balancer.
    for id in ["i-inv1", "i-inv2"] {
        boto.expect_err(
            "DeregisterInstancesFromLoadBalancer",
            &with_instances("reg", &[id]),
            "InvalidInstance",
            400,
        );
    }
    boto.expect_err(
        "DeregisterInstancesFromLoadBalancer",
        &with_instances("nope", &["i-inv1"]),
        "LoadBalancerNotFound",
        400,
    );
    // The flags' load balancer still has both of its own.
    let described = boto.ok(
        "DescribeLoadBalancers",
        &one("LoadBalancerNames.0", "default"),
    );
    assert_eq!(
        described.field_of_each("LoadBalancerDescriptions.0.Instances", "InstanceId"),
        ["i-inv1", "i-inv2"]
    );
}

#[test]
fn a_missing_required_parameter_is_missing_parameter() {
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    boto.expect_err(
        "DeleteLoadBalancer",
        &[] as &[(&str, &str)],
        "MissingParameter",
        400,
    );
    boto.expect_err(
        "DescribeInstanceHealth",
        &[] as &[(&str, &str)],
        "MissingParameter",
        400,
    );
    boto.expect_err(
        "RegisterInstancesWithLoadBalancer",
        &one("LoadBalancerName", "default"),
        "MissingParameter",
        400,
    );
}
