//! The load balancer actions through boto3: the flags' load balancer as the API shows
//! it, CreateLoadBalancer, DeleteLoadBalancer, DescribeLoadBalancers, the listener and
//! registration actions, with each error code and its HTTP status.

use crate::client::Boto;
use crate::common::*;
use crate::*;
/// The flags' load balancer is in the API as if CreateLoadBalancer had made it.
#[test]
fn flags_load_balancer_is_described_with_its_listener_and_instances() {
    let b1 = Backend::echo(IP1, "i-flag1");
    let b2 = Backend::echo(IP2, "i-flag2");
    let clb = clb_api(
        &[b1.instance("zone-a"), b2.instance("zone-b")],
        &["--name", "Web"],
    );
    let mut boto = Boto::new(clb.api_addr());

    let all = boto.ok("DescribeLoadBalancers", &[] as &[(&str, &str)]);
    assert_eq!(all.len("LoadBalancerDescriptions"), 1, "answer:\n{all}");
    let web = boto.ok("DescribeLoadBalancers", &one("LoadBalancerNames.0", "Web"));
    let d = "LoadBalancerDescriptions.0";
    assert_eq!(web.get(&format!("{d}.LoadBalancerName")), "Web");
    assert_eq!(web.get(&format!("{d}.DNSName")), "web.elb.localhost");
    assert_eq!(
        web.len(&format!("{d}.ListenerDescriptions")),
        1,
        "answer:\n{web}"
    );
    let l = format!("{d}.ListenerDescriptions.0.Listener");
    assert_eq!(web.get(&format!("{l}.Protocol")), "HTTP");
    assert_eq!(
        web.get(&format!("{l}.LoadBalancerPort")),
        clb.port().to_string()
    );
    assert_eq!(web.get(&format!("{l}.InstanceProtocol")), "HTTP");
    assert_eq!(web.get(&format!("{l}.InstancePort")), "80");
    assert_eq!(
        web.field_of_each(&format!("{d}.Instances"), "InstanceId"),
        ["i-flag1", "i-flag2"]
    );
    assert_eq!(
        web.sorted(&format!("{d}.AvailabilityZones")),
        ["zone-a", "zone-b"]
    );
    assert_eq!(
        web.get(&format!("{d}.HealthCheck.Target")),
        DEFAULT_HEALTH_CHECK
    );

    for id in ["i-flag1", "i-flag2"] {
        assert_eq!(
            health(&mut boto, "Web", id),
            triple("InService", "N/A", "N/A")
        );
    }
    assert_eq!(listed_health(&mut boto, "Web"), ["i-flag1", "i-flag2"]);

    // Flags' defaults: cross-zone on, draining 300 s, idle timeout 60, defensive.
    let attrs = boto.ok(
        "DescribeLoadBalancerAttributes",
        &one("LoadBalancerName", "Web"),
    );
    let a = "LoadBalancerAttributes";
    assert_eq!(
        attrs.get(&format!("{a}.CrossZoneLoadBalancing.Enabled")),
        "true",
        "{attrs}"
    );
    assert_eq!(
        attrs.get(&format!("{a}.ConnectionDraining.Enabled")),
        "true",
        "{attrs}"
    );
    assert_eq!(
        attrs.get(&format!("{a}.ConnectionDraining.Timeout")),
        "300",
        "{attrs}"
    );
    assert_eq!(
        attrs.get(&format!("{a}.ConnectionSettings.IdleTimeout")),
        "60",
        "{attrs}"
    );
}

#[test]
fn describe_of_an_unknown_load_balancer_is_load_balancer_not_found() {
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    let message = boto.expect_err(
        "DescribeLoadBalancers",
        &one("LoadBalancerNames.0", "no-such-lb"),
        "LoadBalancerNotFound",
        400,
    );
    assert!(message.contains("no-such-lb"), "message: {message:?}");
    // One unknown name among known ones fails the whole call.
    let mut params = one("LoadBalancerNames.0", "default");
    params.extend(one("LoadBalancerNames.1", "no-such-lb"));
    boto.expect_err(
        "DescribeLoadBalancers",
        &params,
        "LoadBalancerNotFound",
        400,
    );
    for op in [
        "DescribeInstanceHealth",
        "DescribeLoadBalancerAttributes",
        "DeleteLoadBalancerListeners",
    ] {
        let mut params = one("LoadBalancerName", "no-such-lb");
        if op == "DeleteLoadBalancerListeners" {
            params.extend(one("LoadBalancerPorts.0", "80"));
        }
        boto.expect_err(op, &params, "LoadBalancerNotFound", 400);
    }
    boto.expect_err(
        "DescribeTags",
        &one("LoadBalancerNames.0", "no-such-lb"),
        "LoadBalancerNotFound",
        400,
    );
}

#[test]
fn flags_draining_off_and_seconds_show_in_the_attributes() {
    for (flag, enabled, timeout) in [("off", "false", None), ("45", "true", Some("45"))] {
        let clb = clb_api(&[], &["--draining", flag]);
        let mut boto = Boto::new(clb.api_addr());
        let attrs = boto.ok(
            "DescribeLoadBalancerAttributes",
            &one("LoadBalancerName", "default"),
        );
        let c = "LoadBalancerAttributes.ConnectionDraining";
        assert_eq!(
            attrs.get(&format!("{c}.Enabled")),
            enabled,
            "--draining {flag}:\n{attrs}"
        );
        if let Some(t) = timeout {
            assert_eq!(
                attrs.get(&format!("{c}.Timeout")),
                t,
                "--draining {flag}:\n{attrs}"
            );
        }
    }
}

#[test]
fn create_describe_and_delete_a_load_balancer() {
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    let port = free_port("127.0.0.1");
    let mut params = create_params("Api-LB-1", port, 8081, &["zone-a", "zone-b"]);
    params.extend([
        ("Tags.0.Key".to_string(), "team".to_string()),
        ("Tags.0.Value".to_string(), "edge".to_string()),
    ]);
    let created = boto.ok("CreateLoadBalancer", &params);
    assert_eq!(created.get("DNSName"), "api-lb-1.elb.localhost");

    let all = boto.ok("DescribeLoadBalancers", &[] as &[(&str, &str)]);
    assert_eq!(
        all.field_of_each("LoadBalancerDescriptions", "LoadBalancerName"),
        ["Api-LB-1", "default"]
    );
    let one_lb = boto.ok(
        "DescribeLoadBalancers",
        &one("LoadBalancerNames.0", "Api-LB-1"),
    );
    let d = "LoadBalancerDescriptions.0";
    assert_eq!(one_lb.len("LoadBalancerDescriptions"), 1, "{one_lb}");
    assert_eq!(
        one_lb.get(&format!("{d}.DNSName")),
        "api-lb-1.elb.localhost"
    );
    let l = format!("{d}.ListenerDescriptions.0.Listener");
    assert_eq!(one_lb.get(&format!("{l}.Protocol")), "HTTP");
    assert_eq!(
        one_lb.get(&format!("{l}.LoadBalancerPort")),
        port.to_string()
    );
    assert_eq!(one_lb.get(&format!("{l}.InstanceProtocol")), "HTTP");
    assert_eq!(one_lb.get(&format!("{l}.InstancePort")), "8081");
    assert_eq!(
        one_lb.sorted(&format!("{d}.AvailabilityZones")),
        ["zone-a", "zone-b"]
    );
    assert_eq!(one_lb.len(&format!("{d}.Instances")), 0, "{one_lb}");
    // API defaults of a new load balancer's health check (spec §2.1, observed).
    let h = format!("{d}.HealthCheck");
    assert_eq!(one_lb.get(&format!("{h}.Target")), "TCP:8081");
    assert_eq!(one_lb.get(&format!("{h}.Interval")), "30");
    assert_eq!(one_lb.get(&format!("{h}.Timeout")), "5");
    assert_eq!(one_lb.get(&format!("{h}.UnhealthyThreshold")), "2");
    assert_eq!(one_lb.get(&format!("{h}.HealthyThreshold")), "10");
    assert_eq!(one_lb.get(&format!("{d}.Scheme")), "internet-facing");
    assert!(
        one_lb.opt(&format!("{d}.CreatedTime")).is_some(),
        "no CreatedTime:\n{one_lb}"
    );
    let tags = boto.ok("DescribeTags", &one("LoadBalancerNames.0", "Api-LB-1"));
    assert_eq!(tags.get("TagDescriptions.0.Tags.0.Key"), "team", "{tags}");
    assert_eq!(tags.get("TagDescriptions.0.Tags.0.Value"), "edge", "{tags}");

    // The same name with other settings.
    let other = create_params("Api-LB-1", free_port("127.0.0.1"), 9090, &["zone-a"]);
    boto.expect_err(
        "CreateLoadBalancer",
        &other,
        "DuplicateLoadBalancerName",
        400,
    );

    boto.ok("DeleteLoadBalancer", &one("LoadBalancerName", "Api-LB-1"));
    boto.expect_err(
        "DescribeLoadBalancers",
        &one("LoadBalancerNames.0", "Api-LB-1"),
        "LoadBalancerNotFound",
        400,
    );
    // Idempotent: deleting it again, or a name that never existed, succeeds.
    boto.ok("DeleteLoadBalancer", &one("LoadBalancerName", "Api-LB-1"));
    boto.ok("DeleteLoadBalancer", &one("LoadBalancerName", "never-was"));
    let all = boto.ok("DescribeLoadBalancers", &[] as &[(&str, &str)]);
    assert_eq!(
        all.field_of_each("LoadBalancerDescriptions", "LoadBalancerName"),
        ["default"]
    );
}

/// Every protocol pair of the same layer is accepted (TLS ones need an
/// SSLCertificateId, shown again by Describe); HTTP layer to TCP layer is not.
#[test]
fn create_accepts_every_protocol_pair_and_refuses_bad_names() {
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    let certificate = "arn:aws:iam::123456789012:server-certificate/test";
    for (i, (proto, instance_proto)) in [
        ("SSL", "TCP"),
        ("SSL", "SSL"),
        ("HTTPS", "HTTP"),
        ("HTTPS", "HTTPS"),
        ("TCP", "SSL"),
        ("HTTP", "HTTPS"),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("proto-lb-{i}");
        let port = free_port("127.0.0.1");
        let mut params = create_params(&name, port, 80, &["zone-a"]);
        params[1].1 = proto.to_string();
        params[3].1 = instance_proto.to_string();
        let secure = proto == "HTTPS" || proto == "SSL";
        if secure {
            let e = boto.err("CreateLoadBalancer", &params);
            assert_eq!(
                (e.code.as_str(), e.status),
                ("ValidationError", 400),
                "{proto} without a certificate: {e:?}"
            );
            params.push(("Listeners.0.SSLCertificateId".into(), certificate.into()));
        }
        boto.ok("CreateLoadBalancer", &params);
        let described = boto.ok("DescribeLoadBalancers", &one("LoadBalancerNames.0", &name));
        let l = "LoadBalancerDescriptions.0.ListenerDescriptions.0.Listener";
        assert_eq!(
            described.get(&format!("{l}.Protocol")),
            proto,
            "{described}"
        );
        assert_eq!(
            described.get(&format!("{l}.InstanceProtocol")),
            instance_proto,
            "{described}"
        );
        let shown = described.opt(&format!("{l}.SSLCertificateId"));
        assert_eq!(shown, secure.then_some(certificate), "{described}");
        assert!(
            wait_until(SOON, || accepts(lb_addr(port))),
            "{proto} listener {port} not listening within {SOON:?}"
        );
    }
    for (proto, instance_proto) in [("HTTP", "TCP"), ("TCP", "HTTP"), ("HTTPS", "SSL")] {
        let mut params = create_params("mixed-lb", free_port("127.0.0.1"), 80, &["zone-a"]);
        params[1].1 = proto.to_string();
        params[3].1 = instance_proto.to_string();
        params.push(("Listeners.0.SSLCertificateId".into(), certificate.into()));
        let e = boto.err("CreateLoadBalancer", &params);
        assert_eq!(
            (e.code.as_str(), e.status),
            ("ValidationError", 400),
            "{proto} -> {instance_proto}: {e:?}"
        );
    }
    // TCP -> TCP: created, described as such, listening.
    let tcp_port = free_port("127.0.0.1");
    let mut params = create_params("tcp-lb", tcp_port, 5432, &["zone-a"]);
    params[1].1 = "TCP".into();
    params[3].1 = "TCP".into();
    let created = boto.ok("CreateLoadBalancer", &params);
    assert_eq!(created.get("DNSName"), "tcp-lb.elb.localhost");
    let described = boto.ok(
        "DescribeLoadBalancers",
        &one("LoadBalancerNames.0", "tcp-lb"),
    );
    let l = "LoadBalancerDescriptions.0.ListenerDescriptions.0.Listener";
    assert_eq!(
        described.get(&format!("{l}.Protocol")),
        "TCP",
        "{described}"
    );
    assert_eq!(
        described.get(&format!("{l}.LoadBalancerPort")),
        tcp_port.to_string()
    );
    assert_eq!(
        described.get(&format!("{l}.InstanceProtocol")),
        "TCP",
        "{described}"
    );
    assert_eq!(described.get(&format!("{l}.InstancePort")), "5432");
    assert!(
        wait_until(SOON, || accepts(lb_addr(tcp_port))),
        "TCP listener {tcp_port} not listening within {SOON:?}"
    );
    let long = "a".repeat(33);
    for name in ["-lead", "trail-", "under_score", "dot.ted", long.as_str()] {
        let params = create_params(name, free_port("127.0.0.1"), 80, &["zone-a"]);
        let e = boto.err("CreateLoadBalancer", &params);
        assert_eq!(
            (e.code.as_str(), e.status),
            ("ValidationError", 400),
            "name {name:?}: {e:?}"
        );
    }
    // The longest allowed name works.
    let longest = "b".repeat(32);
    create_lb(&mut boto, &longest, 80, &["zone-a"]);
    // None of the refused ones exists.
    let all = boto.ok("DescribeLoadBalancers", &[] as &[(&str, &str)]);
    let mut want = vec![longest.as_str(), "default", "tcp-lb"];
    let pairs: Vec<String> = (0..6).map(|i| format!("proto-lb-{i}")).collect();
    want.extend(pairs.iter().map(String::as_str));
    want.sort();
    assert_eq!(
        all.field_of_each("LoadBalancerDescriptions", "LoadBalancerName"),
        want
    );
}

/// More than 20 load balancers (the account limit) is `TooManyLoadBalancers`.
#[test]
fn the_twenty_first_load_balancer_is_too_many() {
    let clb = clb_api(&[], &[]);
    let mut boto = Boto::new(clb.api_addr());
    let limits = boto.ok("DescribeAccountLimits", &[] as &[(&str, &str)]);
    let at = limits
        .find("Limits", "Name", "classic-load-balancers")
        .expect("limit listed");
    assert_eq!(limits.get(&format!("{at}.Max")), "20");
    // The flags' load balancer is one of the 20.
    for i in 1..20 {
        create_lb(&mut boto, &format!("many-{i}"), 80, &["zone-a"]);
    }
    let params = create_params("many-20", free_port("127.0.0.1"), 80, &["zone-a"]);
    let e = boto.err("CreateLoadBalancer", &params);
    assert_eq!(
        (e.code.as_str(), e.status),
        ("TooManyLoadBalancers", 400),
        "{e:?}"
    );
    let all = boto.ok("DescribeLoadBalancers", &[] as &[(&str, &str)]);
    assert_eq!(all.len("LoadBalancerDescriptions"), 20);
    // Room again after a delete.
    boto.ok("DeleteLoadBalancer", &one("LoadBalancerName", "many-7"));
    create_lb(&mut boto, "many-20", 80, &["zone-a"]);
}

#[test]
fn listeners_are_added_and_removed() {
    // An HTTP echo instance: through a TCP listener its answer shows the request as the
    // client sent it, byte for byte (no X-Forwarded-* added).
    let b1 = Backend::echo(IP1, "i-lst");
    let clb = clb_api(&[b1.instance("zone-a")], &[]);
    let mut boto = Boto::new(clb.api_addr());
    let port = create_lb(&mut boto, "lst", 8081, &["zone-a"]);
    let port2 = free_port("127.0.0.1");
    let mut add = one("LoadBalancerName", "lst");
    add.extend(listener(0, port2, 8082));
    boto.ok("CreateLoadBalancerListeners", &add);
    // Identical again: fine.
    boto.ok("CreateLoadBalancerListeners", &add);
    let described = boto.ok("DescribeLoadBalancers", &one("LoadBalancerNames.0", "lst"));
    let ports = described.field_of_each(
        "LoadBalancerDescriptions.0.ListenerDescriptions",
        "Listener.LoadBalancerPort",
    );
    let mut want = vec![port.to_string(), port2.to_string()];
    want.sort();
    assert_eq!(ports, want, "{described}");

    // The same port with another instance port.
    let mut clash = one("LoadBalancerName", "lst");
    clash.extend(listener(0, port2, 9999));
    boto.expect_err(
        "CreateLoadBalancerListeners",
        &clash,
        "DuplicateListener",
        400,
    );
    // HTTPS and SSL listeners are added and listen (clb serves its --cert pairs, here
    // the self-signed default, whatever the certificate id).
    let mut secure_ports = Vec::new();
    for (proto, instance_proto) in [("HTTPS", "HTTP"), ("SSL", "TCP")] {
        let tls_port = free_port("127.0.0.1");
        secure_ports.push(tls_port);
        let mut tls = one("LoadBalancerName", "lst");
        tls.extend(listener(0, tls_port, 80));
        tls[1].1 = proto.into();
        tls[3].1 = instance_proto.into();
        tls.push((
            "Listeners.0.SSLCertificateId".into(),
            "arn:aws:iam::123456789012:server-certificate/test".into(),
        ));
        boto.ok("CreateLoadBalancerListeners", &tls);
        assert!(
            wait_until(SOON, || accepts(lb_addr(tls_port))),
            "{proto} listener {tls_port} not listening within {SOON:?}"
        );
    }
    // A secure listener's certificate id is replaced; a plain or missing one has none.
    let set = |port: u16, id: &str| {
        let mut p = one("LoadBalancerName", "lst");
        p.push(("LoadBalancerPort".into(), port.to_string()));
        p.push(("SSLCertificateId".into(), id.into()));
        p
    };
    boto.ok(
        "SetLoadBalancerListenerSSLCertificate",
        &set(secure_ports[0], "cert-2"),
    );
    let described = boto.ok("DescribeLoadBalancers", &one("LoadBalancerNames.0", "lst"));
    let with_new_id = described.find(
        "LoadBalancerDescriptions.0.ListenerDescriptions",
        "Listener.SSLCertificateId",
        "cert-2",
    );
    assert!(with_new_id.is_some(), "{described}");
    boto.expect_err(
        "SetLoadBalancerListenerSSLCertificate",
        &set(port, "cert-3"),
        "InvalidConfigurationRequest",
        409,
    );
    boto.expect_err(
        "SetLoadBalancerListenerSSLCertificate",
        &set(free_port("127.0.0.1"), "cert-3"),
        "ListenerNotFound",
        400,
    );
    // TCP -> TCP is added, and routes like a listener from the flags: bytes untouched
    // to a registered healthy instance (its own port overrides the instance port 80).
    let tcp_port = free_port("127.0.0.1");
    let mut tcp = one("LoadBalancerName", "lst");
    tcp.extend(listener(0, tcp_port, 80));
    tcp[1].1 = "TCP".into();
    tcp[3].1 = "TCP".into();
    boto.ok("CreateLoadBalancerListeners", &tcp);
    boto.ok(
        "RegisterInstancesWithLoadBalancer",
        &with_instances("lst", &["i-lst"]),
    );
    wait_health(&mut boto, "lst", "i-lst", "InService", WAIT);
    assert!(
        wait_until(SOON, || accepts(lb_addr(tcp_port))),
        "TCP listener {tcp_port} not listening within {SOON:?}"
    );
    let request =
        "GET /through-tcp HTTP/1.1\r\nHost: lst.example\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n";
    let r = Client::connect(lb_addr(tcp_port)).request(request);
    assert_eq!(r.instance(), Some("i-lst"), "{}", r.status_line);
    assert_eq!(echoed(&r), request, "the instance saw another request");
    let mut unknown = one("LoadBalancerName", "nope");
    unknown.extend(listener(0, free_port("127.0.0.1"), 80));
    boto.expect_err(
        "CreateLoadBalancerListeners",
        &unknown,
        "LoadBalancerNotFound",
        400,
    );

    let mut del = one("LoadBalancerName", "lst");
    del.extend(one("LoadBalancerPorts.0", &port2.to_string()));
    boto.ok("DeleteLoadBalancerListeners", &del);
    let described = boto.ok("DescribeLoadBalancers", &one("LoadBalancerNames.0", "lst"));
    let mut want = vec![port.to_string(), tcp_port.to_string()];
    want.extend(secure_ports.iter().map(u16::to_string));
    want.sort();
    assert_eq!(
        described.field_of_each(
            "LoadBalancerDescriptions.0.ListenerDescriptions",
            "Listener.LoadBalancerPort"
        ),
        want
    );
    boto.expect_err("DeleteLoadBalancerListeners", &del, "ListenerNotFound", 400);
    // The TCP listener goes the same way.
    let mut del_tcp = one("LoadBalancerName", "lst");
    del_tcp.extend(one("LoadBalancerPorts.0", &tcp_port.to_string()));
    boto.ok("DeleteLoadBalancerListeners", &del_tcp);
    assert!(
        wait_until(SOON, || !accepts(lb_addr(tcp_port))),
        "deleted TCP listener {tcp_port} still accepts after {SOON:?}"
    );
}
