//! The policy actions through boto3 (spec §1.19–1.20, §7), with each error code and its
//! HTTP status, and a stickiness policy taking effect on its listener.

use crate::client::Boto;
use crate::*;

/// The policy actions (spec §1.19–1.20, §7): creation with ELB's types and attributes,
/// attachment to listeners and instance ports with ELB's errors, descriptions, deletion
/// rules, and a stickiness policy taking effect on the listener at once.
#[test]
fn policies_are_created_attached_described_and_take_effect() {
    let backend = Backend::echo("127.0.0.2", "i-pol");
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    let port = create_lb(&mut boto, "pol", backend.addr.port(), &["zone-a"]);
    let instance = backend.addr.to_string();
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("pol", &[&instance]),
    );
    wait_routed_to(port, "i-pol", SOON);
    let lb = ("LoadBalancerName", "pol");
    boto.ok(
        "CreateLBCookieStickinessPolicy",
        &[lb, ("PolicyName", "p1"), ("CookieExpirationPeriod", "60")],
    );
    boto.ok(
        "CreateAppCookieStickinessPolicy",
        &[lb, ("PolicyName", "p2"), ("CookieName", "SESSION")],
    );
    boto.ok(
        "CreateLoadBalancerPolicy",
        &[
            lb,
            ("PolicyName", "p3"),
            ("PolicyTypeName", "ProxyProtocolPolicyType"),
            ("PolicyAttributes.0.AttributeName", "ProxyProtocol"),
            ("PolicyAttributes.0.AttributeValue", "true"),
        ],
    );
    boto.expect_err(
        "CreateAppCookieStickinessPolicy",
        &[lb, ("PolicyName", "p2"), ("CookieName", "OTHER")],
        "DuplicatePolicyName",
        400,
    );
    boto.expect_err(
        "CreateLoadBalancerPolicy",
        &[
            lb,
            ("PolicyName", "p4"),
            ("PolicyTypeName", "NoSuchPolicyType"),
        ],
        "PolicyTypeNotFound",
        400,
    );
    let described = boto.ok("DescribeLoadBalancerPolicies", &[lb]);
    assert_eq!(
        described.field_of_each("PolicyDescriptions", "PolicyName"),
        ["p1", "p2", "p3"],
        "{described}"
    );
    let types = boto.ok("DescribeLoadBalancerPolicyTypes", &[] as &[(&str, &str)]);
    assert_eq!(types.len("PolicyTypeDescriptions"), 6, "{types}");
    boto.expect_err(
        "DescribeLoadBalancerPolicyTypes",
        &[("PolicyTypeNames.0", "Nope")],
        "PolicyTypeNotFound",
        400,
    );

    // Attach to the listener: ELB's rules, then the cookie on the wire.
    let port_text = port.to_string();
    let set = |names: &[&str]| {
        let mut params = vec![
            ("LoadBalancerName".to_string(), "pol".to_string()),
            ("LoadBalancerPort".to_string(), port_text.clone()),
        ];
        for (i, n) in names.iter().enumerate() {
            params.push((format!("PolicyNames.{i}"), n.to_string()));
        }
        params
    };
    boto.expect_err(
        "SetLoadBalancerPoliciesOfListener",
        &set(&["p1", "p2"]),
        "InvalidConfigurationRequest",
        409,
    );
    boto.expect_err(
        "SetLoadBalancerPoliciesOfListener",
        &set(&["p3"]),
        "InvalidConfigurationRequest",
        409,
    );
    boto.expect_err(
        "SetLoadBalancerPoliciesOfListener",
        &set(&["nope"]),
        "PolicyNotFound",
        400,
    );
    boto.ok("SetLoadBalancerPoliciesOfListener", &set(&["p1"]));
    let d = boto.ok("DescribeLoadBalancers", &one("LoadBalancerNames.0", "pol"));
    let base = "LoadBalancerDescriptions.0";
    assert_eq!(
        d.strings(&format!("{base}.ListenerDescriptions.0.PolicyNames")),
        ["p1"],
        "{d}"
    );
    assert_eq!(
        d.get(&format!(
            "{base}.Policies.LBCookieStickinessPolicies.0.CookieExpirationPeriod"
        )),
        "60"
    );
    assert_eq!(
        d.get(&format!(
            "{base}.Policies.AppCookieStickinessPolicies.0.CookieName"
        )),
        "SESSION"
    );
    assert_eq!(d.strings(&format!("{base}.Policies.OtherPolicies")), ["p3"]);
    let answer = Client::connect(lb_addr(port)).request(&get_close("/sticky"));
    let cookie = answer
        .headers
        .iter()
        .find(|(n, v)| n.eq_ignore_ascii_case("set-cookie") && v.starts_with("AWSELB="))
        .map(|(_, v)| v.clone());
    assert!(
        cookie
            .as_deref()
            .is_some_and(|c| c.ends_with(";PATH=/;MAX-AGE=60")),
        "{:?}",
        answer.headers
    );

    // Instance ports take proxy protocol and back-end authentication policies only.
    let backend_port = backend.addr.port().to_string();
    let backend_set = |names: &[&str]| {
        let mut params = vec![
            ("LoadBalancerName".to_string(), "pol".to_string()),
            ("InstancePort".to_string(), backend_port.clone()),
        ];
        for (i, n) in names.iter().enumerate() {
            params.push((format!("PolicyNames.{i}"), n.to_string()));
        }
        params
    };
    boto.expect_err(
        "SetLoadBalancerPoliciesForBackendServer",
        &backend_set(&["p1"]),
        "InvalidConfigurationRequest",
        409,
    );
    boto.ok(
        "SetLoadBalancerPoliciesForBackendServer",
        &backend_set(&["p3"]),
    );
    let d = boto.ok("DescribeLoadBalancers", &one("LoadBalancerNames.0", "pol"));
    assert_eq!(
        d.get(&format!("{base}.BackendServerDescriptions.0.InstancePort")),
        backend_port
    );
    assert_eq!(
        d.strings(&format!("{base}.BackendServerDescriptions.0.PolicyNames")),
        ["p3"]
    );

    // A policy in use cannot be deleted; once replaced it can, and then it is gone.
    boto.expect_err(
        "DeleteLoadBalancerPolicy",
        &[lb, ("PolicyName", "p1")],
        "InvalidConfigurationRequest",
        409,
    );
    boto.ok("SetLoadBalancerPoliciesOfListener", &set(&["p2"]));
    boto.ok("DeleteLoadBalancerPolicy", &[lb, ("PolicyName", "p1")]);
    boto.expect_err(
        "DeleteLoadBalancerPolicy",
        &[lb, ("PolicyName", "p1")],
        "PolicyNotFound",
        400,
    );
}
