//! The settings actions through boto3: ConfigureHealthCheck, the attributes, zones and
//! subnets, tags and account limits, with each error code and its HTTP status (the policy
//! actions are in `policies`).

use crate::client::Boto;
use crate::*;

#[test]
fn health_check_is_configured_within_its_ranges() {
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    create_lb(&mut boto, "hc", 8081, &["zone-a"]);
    let check = |target: &str, interval: u32, timeout: u32, unhealthy: u32, healthy: u32| {
        vec![
            ("LoadBalancerName".to_string(), "hc".to_string()),
            ("HealthCheck.Target".into(), target.to_string()),
            ("HealthCheck.Interval".into(), interval.to_string()),
            ("HealthCheck.Timeout".into(), timeout.to_string()),
            (
                "HealthCheck.UnhealthyThreshold".into(),
                unhealthy.to_string(),
            ),
            ("HealthCheck.HealthyThreshold".into(), healthy.to_string()),
        ]
    };
    let r = boto.ok(
        "ConfigureHealthCheck",
        &check("HTTP:8081/ping", 10, 3, 4, 6),
    );
    assert_eq!(r.get("HealthCheck.Target"), "HTTP:8081/ping", "{r}");
    assert_eq!(r.get("HealthCheck.Interval"), "10", "{r}");
    assert_eq!(r.get("HealthCheck.Timeout"), "3", "{r}");
    assert_eq!(r.get("HealthCheck.UnhealthyThreshold"), "4", "{r}");
    assert_eq!(r.get("HealthCheck.HealthyThreshold"), "6", "{r}");
    let d = boto.ok("DescribeLoadBalancers", &one("LoadBalancerNames.0", "hc"));
    let h = "LoadBalancerDescriptions.0.HealthCheck";
    assert_eq!(d.get(&format!("{h}.Target")), "HTTP:8081/ping");
    assert_eq!(d.get(&format!("{h}.Interval")), "10");
    // The extremes of every range are accepted.
    boto.ok("ConfigureHealthCheck", &check("TCP:1", 5, 2, 2, 2));
    boto.ok("ConfigureHealthCheck", &check("TCP:65535", 300, 60, 10, 10));

    for (what, bad) in [
        ("interval 4", check("TCP:80", 4, 2, 2, 2)),
        ("interval 301", check("TCP:80", 301, 5, 2, 2)),
        ("timeout 1", check("TCP:80", 30, 1, 2, 2)),
        ("timeout 61", check("TCP:80", 300, 61, 2, 2)),
        ("timeout = interval", check("TCP:80", 10, 10, 2, 2)),
        ("timeout > interval", check("TCP:80", 10, 20, 2, 2)),
        ("unhealthy 1", check("TCP:80", 30, 5, 1, 2)),
        ("unhealthy 11", check("TCP:80", 30, 5, 11, 2)),
        ("healthy 1", check("TCP:80", 30, 5, 2, 1)),
        ("healthy 11", check("TCP:80", 30, 5, 2, 11)),
        ("HTTP without path", check("HTTP:80", 30, 5, 2, 2)),
        ("unknown protocol", check("FTP:21", 30, 5, 2, 2)),
        ("port 0", check("TCP:0", 30, 5, 2, 2)),
        ("port 65536", check("TCP:65536", 30, 5, 2, 2)),
        ("no port", check("TCP", 30, 5, 2, 2)),
    ] {
        let e = boto.err("ConfigureHealthCheck", &bad);
        assert_eq!(
            (e.code.as_str(), e.status),
            ("ValidationError", 400),
            "{what}: {e:?}"
        );
    }
    // Nothing refused changed the stored check.
    let d = boto.ok("DescribeLoadBalancers", &one("LoadBalancerNames.0", "hc"));
    assert_eq!(d.get(&format!("{h}.Target")), "TCP:65535");
    let mut unknown = check("TCP:80", 30, 5, 2, 2);
    unknown[0].1 = "nope".into();
    boto.expect_err(
        "ConfigureHealthCheck",
        &unknown,
        "LoadBalancerNotFound",
        400,
    );
}

#[test]
fn attributes_have_api_defaults_and_change_within_their_ranges() {
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    create_lb(&mut boto, "attrs", 8081, &["zone-a"]);
    let name = one("LoadBalancerName", "attrs");
    let a = "LoadBalancerAttributes";
    let d = boto.ok("DescribeLoadBalancerAttributes", &name);
    assert_eq!(
        d.get(&format!("{a}.CrossZoneLoadBalancing.Enabled")),
        "false",
        "{d}"
    );
    assert_eq!(
        d.get(&format!("{a}.ConnectionDraining.Enabled")),
        "false",
        "{d}"
    );
    assert_eq!(
        d.get(&format!("{a}.ConnectionDraining.Timeout")),
        "300",
        "{d}"
    );
    assert_eq!(
        d.get(&format!("{a}.ConnectionSettings.IdleTimeout")),
        "60",
        "{d}"
    );
    assert_eq!(d.get(&format!("{a}.AccessLog.Enabled")), "false", "{d}");
    let desync = d
        .find(
            &format!("{a}.AdditionalAttributes"),
            "Key",
            "elb.http.desyncmitigationmode",
        )
        .unwrap_or_else(|| panic!("no desync mode attribute:\n{d}"));
    assert_eq!(d.get(&format!("{desync}.Value")), "defensive");

    let modify = |pairs: &[(&str, &str)]| {
        let mut params = one("LoadBalancerName", "attrs");
        params.extend(
            pairs
                .iter()
                .map(|(k, v)| (format!("{a}.{k}"), v.to_string())),
        );
        params
    };
    let r = boto.ok(
        "ModifyLoadBalancerAttributes",
        &modify(&[
            ("CrossZoneLoadBalancing.Enabled", "true"),
            ("ConnectionDraining.Enabled", "true"),
            ("ConnectionDraining.Timeout", "30"),
            ("ConnectionSettings.IdleTimeout", "120"),
            (
                "AdditionalAttributes.0.Key",
                "elb.http.desyncmitigationmode",
            ),
            ("AdditionalAttributes.0.Value", "strictest"),
        ]),
    );
    assert_eq!(r.get("LoadBalancerName"), "attrs", "{r}");
    assert_eq!(
        r.get(&format!("{a}.CrossZoneLoadBalancing.Enabled")),
        "true",
        "{r}"
    );
    let d = boto.ok("DescribeLoadBalancerAttributes", &name);
    assert_eq!(
        d.get(&format!("{a}.CrossZoneLoadBalancing.Enabled")),
        "true",
        "{d}"
    );
    assert_eq!(
        d.get(&format!("{a}.ConnectionDraining.Enabled")),
        "true",
        "{d}"
    );
    assert_eq!(
        d.get(&format!("{a}.ConnectionDraining.Timeout")),
        "30",
        "{d}"
    );
    assert_eq!(
        d.get(&format!("{a}.ConnectionSettings.IdleTimeout")),
        "120",
        "{d}"
    );
    let desync = d
        .find(
            &format!("{a}.AdditionalAttributes"),
            "Key",
            "elb.http.desyncmitigationmode",
        )
        .unwrap_or_else(|| panic!("no desync mode attribute:\n{d}"));
    assert_eq!(d.get(&format!("{desync}.Value")), "strictest");
    // Attributes not named keep their values.
    boto.ok(
        "ModifyLoadBalancerAttributes",
        &modify(&[("ConnectionSettings.IdleTimeout", "4000")]),
    );
    let d = boto.ok("DescribeLoadBalancerAttributes", &name);
    assert_eq!(
        d.get(&format!("{a}.ConnectionSettings.IdleTimeout")),
        "4000",
        "{d}"
    );
    assert_eq!(
        d.get(&format!("{a}.ConnectionDraining.Timeout")),
        "30",
        "{d}"
    );
    for mode in ["monitor", "defensive"] {
        boto.ok(
            "ModifyLoadBalancerAttributes",
            &modify(&[
                (
                    "AdditionalAttributes.0.Key",
                    "elb.http.desyncmitigationmode",
                ),
                ("AdditionalAttributes.0.Value", mode),
            ]),
        );
    }

    let e = boto.err(
        "ModifyLoadBalancerAttributes",
        &modify(&[("AccessLog.Enabled", "true")]),
    );
    assert_eq!(
        (e.code.as_str(), e.status),
        ("InvalidConfigurationRequest", 409),
        "AccessLog: {e:?}"
    );
    for (what, bad) in [
        ("idle 0", modify(&[("ConnectionSettings.IdleTimeout", "0")])),
        (
            "idle 4001",
            modify(&[("ConnectionSettings.IdleTimeout", "4001")]),
        ),
        (
            "draining 0",
            modify(&[
                ("ConnectionDraining.Enabled", "true"),
                ("ConnectionDraining.Timeout", "0"),
            ]),
        ),
        (
            "draining 3601",
            modify(&[
                ("ConnectionDraining.Enabled", "true"),
                ("ConnectionDraining.Timeout", "3601"),
            ]),
        ),
        (
            "desync mode",
            modify(&[
                (
                    "AdditionalAttributes.0.Key",
                    "elb.http.desyncmitigationmode",
                ),
                ("AdditionalAttributes.0.Value", "paranoid"),
            ]),
        ),
    ] {
        let e = boto.err("ModifyLoadBalancerAttributes", &bad);
        assert_eq!(
            (e.code.as_str(), e.status),
            ("ValidationError", 400),
            "{what}: {e:?}"
        );
    }
    let d = boto.ok("DescribeLoadBalancerAttributes", &name);
    assert_eq!(
        d.get(&format!("{a}.ConnectionSettings.IdleTimeout")),
        "4000",
        "{d}"
    );
    assert_eq!(d.get(&format!("{a}.AccessLog.Enabled")), "false", "{d}");

    let mut unknown = modify(&[("ConnectionSettings.IdleTimeout", "30")]);
    unknown[0].1 = "nope".into();
    boto.expect_err(
        "ModifyLoadBalancerAttributes",
        &unknown,
        "LoadBalancerNotFound",
        400,
    );
}

#[test]
fn availability_zones_are_enabled_and_disabled_but_never_all() {
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    create_lb(&mut boto, "zones", 8081, &["zone-a", "zone-b"]);
    let zones = |list: &[&str]| {
        let mut params = one("LoadBalancerName", "zones");
        for (i, z) in list.iter().enumerate() {
            params.push((format!("AvailabilityZones.{i}"), z.to_string()));
        }
        params
    };
    let r = boto.ok(
        "EnableAvailabilityZonesForLoadBalancer",
        &zones(&["zone-c"]),
    );
    assert_eq!(
        r.sorted("AvailabilityZones"),
        ["zone-a", "zone-b", "zone-c"],
        "{r}"
    );
    let r = boto.ok(
        "DisableAvailabilityZonesForLoadBalancer",
        &zones(&["zone-a"]),
    );
    assert_eq!(r.sorted("AvailabilityZones"), ["zone-b", "zone-c"], "{r}");
    let d = boto.ok(
        "DescribeLoadBalancers",
        &one("LoadBalancerNames.0", "zones"),
    );
    assert_eq!(
        d.sorted("LoadBalancerDescriptions.0.AvailabilityZones"),
        ["zone-b", "zone-c"]
    );
    boto.expect_err(
        "DisableAvailabilityZonesForLoadBalancer",
        &zones(&["zone-b", "zone-c"]),
        "ValidationError",
        400,
    );
    let d = boto.ok(
        "DescribeLoadBalancers",
        &one("LoadBalancerNames.0", "zones"),
    );
    assert_eq!(
        d.sorted("LoadBalancerDescriptions.0.AvailabilityZones"),
        ["zone-b", "zone-c"]
    );
    let mut unknown = zones(&["zone-a"]);
    unknown[0].1 = "nope".into();
    boto.expect_err(
        "EnableAvailabilityZonesForLoadBalancer",
        &unknown,
        "LoadBalancerNotFound",
        400,
    );
}

#[test]
fn tags_are_added_replaced_listed_and_removed() {
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    create_lb(&mut boto, "tag-a", 8081, &["zone-a"]);
    create_lb(&mut boto, "tag-b", 8081, &["zone-a"]);
    let add = |lbs: &[&str], tags: &[(&str, &str)]| {
        let mut params = Vec::new();
        for (i, lb) in lbs.iter().enumerate() {
            params.push((format!("LoadBalancerNames.{i}"), lb.to_string()));
        }
        for (i, (k, v)) in tags.iter().enumerate() {
            params.push((format!("Tags.{i}.Key"), k.to_string()));
            params.push((format!("Tags.{i}.Value"), v.to_string()));
        }
        params
    };
    boto.ok(
        "AddTags",
        &add(&["tag-a", "tag-b"], &[("env", "test"), ("owner", "ops")]),
    );
    boto.ok("AddTags", &add(&["tag-a"], &[("env", "prod")]));
    let mut names = one("LoadBalancerNames.0", "tag-a");
    names.extend(one("LoadBalancerNames.1", "tag-b"));
    let t = boto.ok("DescribeTags", &names);
    assert_eq!(t.len("TagDescriptions"), 2, "{t}");
    let tags_of = |lb: &str| {
        let at = t
            .find("TagDescriptions", "LoadBalancerName", lb)
            .expect("described");
        let mut pairs: Vec<(String, String)> = (0..t.len(&format!("{at}.Tags")))
            .map(|i| {
                (
                    t.get(&format!("{at}.Tags.{i}.Key")).to_string(),
                    t.get(&format!("{at}.Tags.{i}.Value")).to_string(),
                )
            })
            .collect();
        pairs.sort();
        pairs
    };
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        tags_of("tag-a"),
        [pair("env", "prod"), pair("owner", "ops")]
    );
    assert_eq!(
        tags_of("tag-b"),
        [pair("env", "test"), pair("owner", "ops")]
    );

    let e = boto.err("AddTags", &add(&["tag-a"], &[("k", "1"), ("k", "2")]));
    assert_eq!(
        (e.code.as_str(), e.status),
        ("DuplicateTagKeys", 400),
        "{e:?}"
    );
    // 2 tags + 9 new = 11 > 10.
    let many: Vec<(String, String)> = (0..9).map(|i| (format!("k{i}"), "v".to_string())).collect();
    let many_refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let e = boto.err("AddTags", &add(&["tag-a"], &many_refs));
    assert_eq!((e.code.as_str(), e.status), ("TooManyTags", 400), "{e:?}");
    // Exactly 10 is fine.
    boto.ok("AddTags", &add(&["tag-a"], &many_refs[..8]));
    let t = boto.ok("DescribeTags", &one("LoadBalancerNames.0", "tag-a"));
    assert_eq!(t.len("TagDescriptions.0.Tags"), 10, "{t}");
    boto.expect_err(
        "AddTags",
        &add(&["nope"], &[("a", "b")]),
        "LoadBalancerNotFound",
        400,
    );

    let mut remove = one("LoadBalancerNames.0", "tag-b");
    remove.extend(one("Tags.0.Key", "owner"));
    boto.ok("RemoveTags", &remove);
    let t = boto.ok("DescribeTags", &one("LoadBalancerNames.0", "tag-b"));
    assert_eq!(t.len("TagDescriptions.0.Tags"), 1, "{t}");
    assert_eq!(t.get("TagDescriptions.0.Tags.0.Key"), "env");
    remove[0].1 = "nope".into();
    boto.expect_err("RemoveTags", &remove, "LoadBalancerNotFound", 400);
}

#[test]
fn account_limits_are_elbs() {
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    let limits = boto.ok("DescribeAccountLimits", &[] as &[(&str, &str)]);
    for (name, max) in [
        ("classic-load-balancers", "20"),
        ("classic-listeners", "100"),
        ("classic-registered-instances", "1000"),
    ] {
        let at = limits
            .find("Limits", "Name", name)
            .unwrap_or_else(|| panic!("{name} not listed:\n{limits}"));
        assert_eq!(limits.get(&format!("{at}.Max")), max, "{name}");
    }
}

/// Subnets are zone labels here: attaching and detaching answer the new list.
#[test]
fn subnets_attach_and_detach_like_zones() {
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    create_lb(&mut boto, "subnets", 8081, &["zone-a"]);
    let r = boto.ok(
        "AttachLoadBalancerToSubnets",
        &[("LoadBalancerName", "subnets"), ("Subnets.0", "subnet-b")],
    );
    assert!(
        r.strings("Subnets").contains(&"subnet-b".to_string()),
        "{r}"
    );
    let r = boto.ok(
        "DetachLoadBalancerFromSubnets",
        &[("LoadBalancerName", "subnets"), ("Subnets.0", "subnet-b")],
    );
    assert!(
        !r.strings("Subnets").contains(&"subnet-b".to_string()),
        "{r}"
    );
}
