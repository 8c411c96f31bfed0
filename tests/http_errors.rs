//! clb's own answers (spec §11): each with ELB's status line, `Content-Length: 0`
//! and a `Connection` header; 400/405/408/414/431 close the client connection,
//! 503/504 keep it open. Malformed input never stops clb from serving.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn one_echo(extra: &[&str]) -> (Backend, Clb) {
    let backend = Backend::echo(IP1, "i-1");
    let mut args = vec!["--workers", "2"];
    args.extend_from_slice(extra);
    let clb = Clb::http(&[backend.instance("zone-a")], &args);
    (backend, clb)
}

/// Sends `request` (as much as clb takes), expects the canned `status_line`, then
/// the connection closed; then checks clb still serves a fresh connection.
fn rejected_and_closed(request: &[u8], status_line: &str) {
    let (backend, clb) = one_echo(&[]);
    let mut client = clb.connect();
    client.send_lossy(request);
    let r = client
        .read_response(false)
        .unwrap_or_else(|e| panic!("expected {status_line:?}, got {e:?}"));
    assert_canned(&r, status_line);
    client.expect_closed(Duration::from_secs(5)).unwrap();
    assert_eq!(
        backend.requests(),
        0,
        "the rejected request reached the instance"
    );
    assert_eq!(
        clb.connect().request(&get("/")).status,
        200,
        "clb stopped serving"
    );
}

#[test]
fn malformed_header_line_gets_400_and_close() {
    rejected_and_closed(
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        "HTTP/1.1 400 BAD_REQUEST",
    );
}

#[test]
fn connect_method_gets_400_and_close() {
    rejected_and_closed(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "HTTP/1.1 400 BAD_REQUEST",
    );
}

#[test]
fn http11_request_without_host_gets_400_and_close() {
    rejected_and_closed(b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 BAD_REQUEST");
}

#[test]
fn method_of_128_chars_gets_405_and_close() {
    let request = format!("{} / HTTP/1.1\r\nHost: x\r\n\r\n", "M".repeat(128));
    rejected_and_closed(request.as_bytes(), "HTTP/1.1 405 METHOD_NOT_ALLOWED");
}

#[test]
fn method_of_127_chars_is_forwarded() {
    let (_b, clb) = one_echo(&[]);
    let method = "M".repeat(127);
    let r = clb
        .connect()
        .request(&format!("{method} /x HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(echoed(&r).starts_with(&format!("{method} /x HTTP/1.1\r\n")));
}

#[test]
fn request_line_over_16_kib_gets_414_and_close() {
    let request = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(16 * 1024 + 10)
    );
    rejected_and_closed(request.as_bytes(), "HTTP/1.1 414 URI_TOO_LONG");
}

#[test]
fn headers_over_64_kib_get_431_and_close() {
    let mut request = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..66 {
        request.push_str(&format!("X-Fill-{i:02}: {}\r\n", "v".repeat(1000)));
    }
    request.push_str("\r\n");
    rejected_and_closed(
        request.as_bytes(),
        "HTTP/1.1 431 REQUEST_HEADER_FIELDS_TOO_LARGE",
    );
}

#[test]
fn more_than_100_headers_get_431_and_close() {
    let mut request = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        request.push_str(&format!("X-H-{i}: v\r\n"));
    }
    request.push_str("\r\n");
    rejected_and_closed(
        request.as_bytes(),
        "HTTP/1.1 431 REQUEST_HEADER_FIELDS_TOO_LARGE",
    );
}

#[test]
fn binary_garbage_does_not_stop_clb() {
    let (_b, clb) = one_echo(&[]);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..20 {
        let junk: Vec<u8> = (0..2000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let mut stream = TcpStream::connect(clb.addr).expect("connect");
        let _ = stream.write_all(&junk);
    }
    let mut client = clb.connect();
    assert_eq!(client.request(&get("/")).status, 200);
}

/// A request left unfinished past the 1 s idle timeout gets 408 and a close.
fn unfinished_request_times_out(partial: &[u8]) {
    let (_b, clb) = one_echo(&["--idle-timeout", "1"]);
    let mut client = clb.connect();
    client.send(partial);
    let sent = Instant::now();
    let r = client.read_response(false).expect("a 408");
    assert_canned(&r, "HTTP/1.1 408 REQUEST_TIMEOUT");
    assert!(
        sent.elapsed() >= Duration::from_millis(800),
        "408 before the idle timeout"
    );
    client.expect_closed(Duration::from_secs(5)).unwrap();
}

#[test]
fn partial_request_head_then_silence_gets_408_and_close() {
    unfinished_request_times_out(b"GET / HTTP/1.1\r\nHost: x\r\n");
}

#[test]
fn partial_request_body_then_silence_gets_408_and_close() {
    unfinished_request_times_out(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
    );
}

#[test]
fn unparsable_instance_response_gets_502() {
    let backend = Backend::start(IP1, "i-1", Behavior::Garbage);
    let clb = Clb::http(
        &[backend.instance("zone-a")],
        &["--workers", "2", "--idle-timeout", "5"],
    );
    let r = clb.connect().request(&get("/"));
    assert_canned(&r, "HTTP/1.1 502 BAD_GATEWAY");
}

/// Two requests on one connection, both answered with the canned 503.
fn unavailable_twice(clb: &Clb) {
    let mut client = clb.connect();
    for _ in 0..2 {
        let r = client.request(&get("/"));
        assert_canned(
            &r,
            "HTTP/1.1 503 Service Unavailable: Back-end server is at capacity",
        );
        assert!(
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
            "503 keeps the connection: {:?}",
            r.header("connection")
        );
    }
}

#[test]
fn no_registered_instance_gets_503_and_keeps_the_connection() {
    let clb = Clb::http(&[], &["--workers", "2"]);
    unavailable_twice(&clb);
}

#[test]
fn instances_outside_the_enabled_zones_get_503() {
    let backend = Backend::echo(IP1, "i-1");
    // Outside the enabled zones it may stay OutOfService (spec 2.2.9): do not wait
    // for it to be InService.
    let clb = Clb::http(
        &[backend.instance("zone-a").expecting_healthy(false)],
        &["--workers", "2", "--zones", "zone-b"],
    );
    unavailable_twice(&clb);
    assert_eq!(backend.requests(), 0);
}

#[test]
fn every_instance_refusing_gets_503() {
    let refused = |id: &str, ip: &str| {
        Instance::new(
            id,
            format!("{ip}:{}", free_port(ip)).parse().unwrap(),
            "zone-a",
        )
    };
    let clb = Clb::http(
        &[refused("i-1", IP1), refused("i-2", IP2)],
        &["--workers", "2"],
    );
    unavailable_twice(&clb);
}

#[test]
fn silent_instance_gets_504_after_the_idle_timeout_and_keeps_the_connection() {
    let backend = Backend::start(IP1, "i-1", Behavior::Silent);
    let clb = Clb::http(
        &[backend.instance("zone-a")],
        &["--workers", "2", "--idle-timeout", "1"],
    );
    let mut client = clb.connect();
    for _ in 0..2 {
        let asked = Instant::now();
        let r = client.request(&get("/"));
        assert_canned(&r, "HTTP/1.1 504 GATEWAY_TIMEOUT");
        assert!(
            asked.elapsed() >= Duration::from_millis(800),
            "504 before the idle timeout"
        );
        assert!(
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
            "504 keeps the connection: {:?}",
            r.header("connection")
        );
    }
}

#[test]
fn instance_closing_before_any_response_byte_gets_504() {
    let backend = Backend::start(IP1, "i-1", Behavior::CloseAfterRequest);
    let clb = Clb::http(&[backend.instance("zone-a")], &["--workers", "2"]);
    let asked = Instant::now();
    let r = clb.connect().request(&get("/"));
    assert_canned(&r, "HTTP/1.1 504 GATEWAY_TIMEOUT");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "504 should come when the instance closes, not after the idle timeout"
    );
}
