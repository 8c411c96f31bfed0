//! The README's flow with the `aws` CLI, and the Query protocol and XML shapes on the
//! wire (what every client relies on).

use crate::client::{aws, AwsRun};
use crate::common::*;
use crate::*;

/// `aws elb ARGS`, which must succeed.
fn aws_ok(clb: &Clb, args: &[&str]) -> AwsRun {
    let run = aws(clb.api_addr(), args);
    assert!(run.success(), "aws elb {args:?}: {run:?}");
    run
}

#[test]
fn readme_flow_create_register_describe_with_the_aws_cli() {
    let web = Backend::echo(IP1, "i-web1");
    let clb = clb_api(&[web.instance("zone-a")], &[]);
    let port = free_port("127.0.0.1");
    let listeners = format!(
        "Protocol=HTTP,LoadBalancerPort={port},InstanceProtocol=HTTP,InstancePort={}",
        web.addr.port()
    );
    let created = aws_ok(
        &clb,
        &[
            "create-load-balancer",
            "--load-balancer-name",
            "my-lb",
            "--listeners",
            &listeners,
            "--availability-zones",
            "zone-a",
        ],
    );
    assert!(
        created.stdout.contains("my-lb.elb.localhost"),
        "stdout: {}",
        created.stdout
    );

    let reg = aws_ok(
        &clb,
        &[
            "register-instances-with-load-balancer",
            "--load-balancer-name",
            "my-lb",
            "--instances",
            "i-web1",
        ],
    );
    assert!(
        reg.stdout.contains("\"InstanceId\": \"i-web1\""),
        "stdout: {}",
        reg.stdout
    );

    let health = [
        "describe-instance-health",
        "--load-balancer-name",
        "my-lb",
        "--query",
        "InstanceStates[].[InstanceId,State,ReasonCode,Description]",
        "--output",
        "text",
    ];
    let mut last = String::new();
    let in_service = wait_until(WAIT, || {
        last = aws_ok(&clb, &health).stdout;
        last.trim_end() == "i-web1\tInService\tN/A\tN/A"
    });
    assert!(in_service, "describe-instance-health said {last:?}");
    // The JSON form too, as the README shows it.
    let json = aws_ok(
        &clb,
        &["describe-instance-health", "--load-balancer-name", "my-lb"],
    );
    assert!(
        json.stdout.contains("\"State\": \"InService\""),
        "stdout: {}",
        json.stdout
    );

    wait_routed_to(port, "i-web1", SOON);

    let dns = aws_ok(
        &clb,
        &[
            "describe-load-balancers",
            "--load-balancer-names",
            "my-lb",
            "--query",
            "LoadBalancerDescriptions[0].[DNSName,ListenerDescriptions[0].Listener.LoadBalancerPort]",
            "--output",
            "text",
        ],
    );
    assert_eq!(
        dns.stdout.trim_end(),
        format!("my-lb.elb.localhost\t{port}")
    );
}

#[test]
fn other_aws_cli_commands_and_errors() {
    let clb = clb_api(&[], &[]);
    let port = free_port("127.0.0.1");
    let listeners =
        format!("Protocol=HTTP,LoadBalancerPort={port},InstanceProtocol=HTTP,InstancePort=8080");
    aws_ok(
        &clb,
        &[
            "create-load-balancer",
            "--load-balancer-name",
            "cli-lb",
            "--listeners",
            &listeners,
            "--availability-zones",
            "zone-a",
            "zone-b",
            "--tags",
            "Key=team,Value=edge",
        ],
    );
    aws_ok(
        &clb,
        &[
            "modify-load-balancer-attributes",
            "--load-balancer-name",
            "cli-lb",
            "--load-balancer-attributes",
            r#"{"ConnectionDraining":{"Enabled":true,"Timeout":60},"ConnectionSettings":{"IdleTimeout":30}}"#,
        ],
    );
    let attrs = aws_ok(
        &clb,
        &[
            "describe-load-balancer-attributes",
            "--load-balancer-name",
            "cli-lb",
            "--query",
            "LoadBalancerAttributes.[ConnectionDraining.Enabled,ConnectionDraining.Timeout,ConnectionSettings.IdleTimeout,CrossZoneLoadBalancing.Enabled]",
            "--output",
            "text",
        ],
    );
    assert_eq!(attrs.stdout.trim_end(), "True\t60\t30\tFalse");
    aws_ok(
        &clb,
        &[
            "configure-health-check",
            "--load-balancer-name",
            "cli-lb",
            "--health-check",
            "Target=HTTP:8080/ping,Interval=10,Timeout=5,UnhealthyThreshold=2,HealthyThreshold=3",
        ],
    );
    let tags = aws_ok(
        &clb,
        &[
            "describe-tags",
            "--load-balancer-names",
            "cli-lb",
            "--query",
            "TagDescriptions[0].Tags[0].[Key,Value]",
            "--output",
            "text",
        ],
    );
    assert_eq!(tags.stdout.trim_end(), "team\tedge");
    // Paginated commands: the CLI follows NextMarker until there is none.
    let limits = aws_ok(
        &clb,
        &[
            "describe-account-limits",
            "--query",
            "Limits[?Name=='classic-load-balancers'].Max",
            "--output",
            "text",
        ],
    );
    assert_eq!(limits.stdout.trim_end(), "20");
    let names = aws_ok(
        &clb,
        &[
            "describe-load-balancers",
            "--query",
            "LoadBalancerDescriptions[].LoadBalancerName",
            "--output",
            "text",
        ],
    );
    let mut names: Vec<&str> = names.stdout.split_whitespace().collect();
    names.sort();
    assert_eq!(names, ["cli-lb", "default"]);

    let missing = aws(
        clb.api_addr(),
        &["describe-load-balancers", "--load-balancer-names", "nope"],
    );
    assert!(!missing.success(), "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("An error occurred (LoadBalancerNotFound) when calling the DescribeLoadBalancers operation"),
        "stderr: {}",
        missing.stderr
    );
    aws_ok(
        &clb,
        &["delete-load-balancer", "--load-balancer-name", "cli-lb"],
    );
    assert!(
        wait_until(SOON, || !accepts(lb_addr(port))),
        "port {port} still accepts after delete-load-balancer"
    );
}

/// The protocol itself: GET query strings and form POSTs, answers in ELB's namespace
/// with a RequestId, ELB's error document.
#[test]
fn query_protocol_and_xml_documents_on_the_wire() {
    let clb = clb_api(&[], &[]);
    let api = clb.api_addr();
    const NS: &str = "xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/\"";

    let r = Client::connect(api).request(&format!(
        "GET /?Action=DescribeLoadBalancers&Version=2012-06-01 HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    ));
    let body = r.body_text();
    assert_eq!(r.status, 200, "{}: {body}", r.status_line);
    assert!(body.starts_with("<?xml"), "body: {body}");
    assert!(
        body.contains(&format!("<DescribeLoadBalancersResponse {NS}>")),
        "body: {body}"
    );
    assert!(
        body.contains("<DescribeLoadBalancersResult>"),
        "body: {body}"
    );
    assert!(
        body.contains("<LoadBalancerName>default</LoadBalancerName>"),
        "body: {body}"
    );
    assert!(
        body.contains("<ResponseMetadata><RequestId>"),
        "body: {body}"
    );
    assert!(
        r.header("content-type").is_some_and(|t| t.contains("xml")),
        "Content-Type: {:?}",
        r.header("content-type")
    );

    let form = "Action=DescribeLoadBalancers&Version=2012-06-01&LoadBalancerNames.member.1=nope";
    let r = Client::connect(api).request(&format!(
        "POST / HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    ));
    let body = r.body_text();
    assert_eq!(r.status, 400, "{}: {body}", r.status_line);
    assert!(
        body.contains(&format!("<ErrorResponse {NS}>")),
        "body: {body}"
    );
    assert!(
        body.contains("<Error><Type>Sender</Type><Code>LoadBalancerNotFound</Code><Message>"),
        "body: {body}"
    );
    assert!(body.contains("<RequestId>"), "body: {body}");

    let form = "Action=NoSuchAction&Version=2012-06-01";
    let r = Client::connect(api).request(&format!(
        "POST / HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    ));
    let body = r.body_text();
    assert_eq!(r.status, 400, "{}: {body}", r.status_line);
    assert!(body.contains("<Code>InvalidAction</Code>"), "body: {body}");
}
