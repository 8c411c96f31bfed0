//! Who may call the API (issue 4 §6): with `--api-credentials FILE` only requests
//! signed with SigV4 by that key pass; without it the API binds loopback only.

use crate::client::{aws_signed, Boto};
use crate::common::*;
use crate::*;
use std::path::PathBuf;

const KEY: &str = "AKIACLBTESTKEY00001";
/// A secret with the characters base64 secrets carry.
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzEXAMPLEKEY";

fn credentials_file(tag: &str, text: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("clb-api-credentials-{}-{tag}", std::process::id()));
    std::fs::write(&path, text).expect("write credentials file");
    path
}

/// Signed by the right key: answered. Unsigned, an unknown key, a wrong secret:
/// refused with 403 and the code AWS uses, and nothing changes.
fn check_signatures(clb: &Clb) {
    let mut boto = Boto::new(clb.api_addr());
    boto.sign_with(KEY, SECRET);
    boto.ok("DescribeLoadBalancers", &[] as &[(&str, &str)]);
    create_lb(&mut boto, "signed", 8080, &["zone-a"]);

    let mut bad = Boto::new(clb.api_addr());
    bad.no_signature();
    bad.expect_err(
        "DescribeLoadBalancers",
        &[] as &[(&str, &str)],
        "MissingAuthenticationToken",
        403,
    );
    let params = create_params("unsigned", free_port("127.0.0.1"), 8080, &["zone-a"]);
    bad.expect_err(
        "CreateLoadBalancer",
        &params,
        "MissingAuthenticationToken",
        403,
    );
    bad.sign_with("AKIAUNKNOWNKEY000000", SECRET);
    bad.expect_err(
        "DescribeLoadBalancers",
        &[] as &[(&str, &str)],
        "InvalidClientTokenId",
        403,
    );
    bad.expect_err("CreateLoadBalancer", &params, "InvalidClientTokenId", 403);
    bad.sign_with(KEY, "not-the-secret");
    bad.expect_err(
        "DescribeLoadBalancers",
        &[] as &[(&str, &str)],
        "SignatureDoesNotMatch",
        403,
    );
    bad.expect_err("CreateLoadBalancer", &params, "SignatureDoesNotMatch", 403);

    let names = boto
        .ok("DescribeLoadBalancers", &[] as &[(&str, &str)])
        .field_of_each("LoadBalancerDescriptions", "LoadBalancerName");
    assert_eq!(
        names,
        ["default", "signed"],
        "a refused request changed something"
    );
}

#[test]
fn with_credentials_only_correctly_signed_requests_pass() {
    let path = credentials_file(
        "ini",
        &format!("[default]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n"),
    );
    let clb = clb_api(
        &[],
        &["--api-credentials", path.to_str().expect("utf-8 path")],
    );
    check_signatures(&clb);

    // The aws CLI signs too (its own code path: form body, its own headers).
    let ok = aws_signed(
        clb.api_addr(),
        &[
            "describe-load-balancers",
            "--load-balancer-names",
            "signed",
            "--output",
            "json",
        ],
        KEY,
        SECRET,
    );
    assert!(ok.success(), "aws signed: {ok:?}");
    assert!(
        ok.stdout.contains("signed.elb.localhost"),
        "stdout: {}",
        ok.stdout
    );
    let wrong = aws_signed(clb.api_addr(), &["describe-load-balancers"], KEY, "wrong");
    assert!(
        !wrong.success(),
        "aws with a wrong secret succeeded: {wrong:?}"
    );
    assert!(
        wrong.stderr.contains("(SignatureDoesNotMatch)"),
        "stderr: {}",
        wrong.stderr
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn credentials_file_may_be_one_key_colon_secret_line() {
    let path = credentials_file("colon", &format!("{KEY}:{SECRET}\n"));
    let clb = clb_api(
        &[],
        &["--api-credentials", path.to_str().expect("utf-8 path")],
    );
    check_signatures(&clb);
    let _ = std::fs::remove_file(path);
}

#[test]
fn without_credentials_the_api_binds_loopback_only() {
    let listener = format!("http:{}", free_port("127.0.0.1"));
    let api = format!("0.0.0.0:{}", free_port("127.0.0.1"));
    assert_refused(
        &[
            "--listener",
            &listener,
            "--bind",
            "127.0.0.1",
            "--api",
            &api,
        ],
        &["--api", "0.0.0.0"],
    );
}

/// An Authorization header that is not a whole SigV4 signature: AWS's common error
/// `IncompleteSignature`, which AWS answers with 400 (not 403 as the others).
#[test]
fn a_malformed_authorization_header_is_incomplete_signature() {
    let path = credentials_file("incomplete", &format!("{KEY}:{SECRET}\n"));
    let clb = clb_api(
        &[],
        &["--api-credentials", path.to_str().expect("utf-8 path")],
    );
    let api = clb.api_addr();
    let form = "Action=DescribeLoadBalancers&Version=2012-06-01";
    let r = Client::connect(api).request(&format!(
        "POST / HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Amz-Date: 20240101T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 Credential={KEY}/20240101/us-east-1/elasticloadbalancing/aws4_request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    ));
    let body = r.body_text();
    assert_eq!(r.status, 400, "{}: {body}", r.status_line);
    assert!(
        body.contains("<Code>IncompleteSignature</Code>"),
        "body: {body}"
    );
    let _ = std::fs::remove_file(path);
}
