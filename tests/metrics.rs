//! Prometheus metrics (issue 9 item 1): after a known mix of requests, `GET /metrics` on
//! the API port reads exactly what happened, and the text parses with the real
//! Prometheus text-format parser (the `prometheus_client` Python package).

mod common;

use common::*;
use std::collections::HashMap;
use std::io::Write;
use std::process::Command;

/// Every sample, parsed by `prometheus_client`: "name{label=value,...}" → value.
fn parse_with_prometheus(text: &str) -> HashMap<String, f64> {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (with the prometheus_client package) is needed: see .ci/run");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_known_mix_of_requests_reads_back_exactly() {
    let ok = Backend::echo("127.0.0.2", "i-ok");
    let dead = Instance::new(
        "i-dead",
        format!("127.0.0.3:{}", free_port("127.0.0.3"))
            .parse()
            .unwrap(),
        "zone-b",
    );
    let clb = Clb::http_api(&[ok.instance("zone-a"), dead], &["--workers", "2"], &[]);
    // 5 routed GETs, each answered 200 by the instance.
    for i in 0..5 {
        let mut client = Client::connect(clb.addr);
        assert_eq!(client.request(&get(&format!("/r{i}"))).status, 200);
    }
    // A GET with Content-Length: 0 is routed too, and is Acceptable to the classifier.
    let mut client = Client::connect(clb.addr);
    let answer = client.request("GET /cl0 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(answer.status, 200);
    // 3 answers clb gives itself: two 400s and a 405.
    for bad in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GARBAGE\r\n\r\n",
        format!("{} / HTTP/1.1\r\nHost: a\r\n\r\n", "M".repeat(128)).as_bytes(),
    ] {
        let mut client = Client::connect(clb.addr);
        client.send(bad);
        assert!(client.response().status >= 400);
    }
    let text = scrape_metrics(clb.api_addr());
    let samples = parse_with_prometheus(&text);
    let get = |key: &str| -> f64 {
        *samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in:\n{text}"))
    };
    let a = "load_balancer=default,zone=zone-a";
    let lb = "load_balancer=default";
    assert_eq!(get(&format!("clb_RequestCount_total{{{a}}}")), 6.0);
    assert_eq!(get(&format!("clb_HTTPCode_Backend_2XX_total{{{a}}}")), 6.0);
    assert_eq!(get(&format!("clb_HTTPCode_ELB_4XX_total{{{lb}}}")), 3.0);
    assert_eq!(get(&format!("clb_HTTPCode_ELB_5XX_total{{{lb}}}")), 0.0);
    assert_eq!(get(&format!("clb_Latency_count{{{a}}}")), 6.0);
    assert_eq!(get(&format!("clb_Latency_bucket{{le=+Inf,{a}}}")), 6.0);
    assert!(get(&format!("clb_Latency_sum{{{a}}}")) > 0.0);
    assert_eq!(get(&format!("clb_HealthyHostCount{{{a}}}")), 1.0);
    assert_eq!(
        get("clb_HealthyHostCount{load_balancer=default,zone=zone-b}"),
        0.0
    );
    // The dead instance's health probes count as connection errors.
    assert!(get("clb_BackendConnectionErrors_total{load_balancer=default,zone=zone-b}") >= 1.0);
    assert_eq!(
        get("clb_desync_requests_total{reason=GetHeadZeroContentLength,tier=Acceptable}"),
        1.0
    );
    assert!(get("clb_DesyncMitigationMode_NonCompliant_Request_Count_total{}") >= 1.0);
    // 6 routed requests: each on a pooled instance connection or a new one.
    let pooled = get("clb_backend_pool_hits_total{}") + get("clb_backend_pool_misses_total{}");
    assert_eq!(pooled, 6.0);
    assert!(get("clb_buffer_pool_hits_total{}") + get("clb_buffer_pool_misses_total{}") > 0.0);
    assert!(get("clb_buffers_in_use{}") >= 0.0);
}
