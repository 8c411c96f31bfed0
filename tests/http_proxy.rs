//! What an HTTP listener forwards to the instance and how it handles the client
//! connection: request rewriting (spec §1.13, §9), `Expect: 100-continue` (§1.17),
//! keep-alive and pipelining (§1.14–1.16), bodiless responses and the idle timeout
//! (§6).

mod common;

use common::*;
use std::time::{Duration, Instant};

/// clb with one echo instance, two workers.
fn one_echo() -> (Backend, Clb) {
    let backend = Backend::echo(IP1, "i-1");
    let clb = Clb::http(&[backend.instance("zone-a")], &["--workers", "2"]);
    (backend, clb)
}

#[test]
fn request_line_is_forwarded_byte_for_byte() {
    let (_b, clb) = one_echo();
    let line = "GET /a%20b/../c//d?x=1&y=%2F&z=a+b;p='q' HTTP/1.1";
    let r = clb
        .connect()
        .request(&format!("{line}\r\nHost: test.example\r\n\r\n"));
    assert!(
        echoed(&r).starts_with(&format!("{line}\r\n")),
        "instance saw {:?}",
        echoed(&r)
    );
}

#[test]
fn http10_request_line_is_forwarded_as_http11() {
    let (_b, clb) = one_echo();
    let r = clb
        .connect()
        .request("GET /old?q=1 HTTP/1.0\r\nHost: test.example\r\n\r\n");
    assert!(
        echoed(&r).starts_with("GET /old?q=1 HTTP/1.1\r\n"),
        "instance saw {:?}",
        echoed(&r)
    );
}

#[test]
fn hop_by_hop_headers_are_removed_before_forwarding() {
    let (_b, clb) = one_echo();
    let r = clb.connect().request(
        "GET / HTTP/1.1\r\nHost: test.example\r\nConnection: keep-alive, X-Private\r\n\
         Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
         Upgrade: example/1\r\nX-Private: secret\r\nX-Kept: yes\r\n\r\n",
    );
    let lines = echoed_header_lines(&r);
    for hop in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "x-private",
    ] {
        assert!(
            !lines
                .iter()
                .any(|l| l.to_ascii_lowercase().starts_with(&format!("{hop}:"))),
            "{hop} reached the instance: {lines:?}"
        );
    }
    assert!(lines.contains(&"X-Kept: yes".to_string()), "{lines:?}");
}

#[test]
fn end_to_end_headers_are_forwarded_byte_for_byte_in_order() {
    let (_b, clb) = one_echo();
    let sent = [
        "Host: test.example",
        "x-MiXeD-CaSe: Value  With  Spaces",
        "X-Dup: one",
        "Accept: */*",
        "X-Dup: two",
        "X-No-Space:tight",
        "Cookie: a=1; b=2",
    ];
    let r = clb
        .connect()
        .request(&format!("GET / HTTP/1.1\r\n{}\r\n\r\n", sent.join("\r\n")));
    let forwarded: Vec<String> = echoed_header_lines(&r)
        .into_iter()
        .filter(|l| !l.to_ascii_lowercase().starts_with("x-forwarded-"))
        .collect();
    assert_eq!(forwarded, sent, "headers as the instance saw them");
}

#[test]
fn x_forwarded_for_is_the_client_ip() {
    let (_b, clb) = one_echo();
    let lines = echoed_header_lines(&clb.connect().request(&get("/")));
    let xff: Vec<&String> = lines
        .iter()
        .filter(|l| l.to_ascii_lowercase().starts_with("x-forwarded-for:"))
        .collect();
    assert_eq!(xff.len(), 1, "{lines:?}");
    assert_eq!(xff[0].split_once(':').unwrap().1.trim(), "127.0.0.1");
}

#[test]
fn x_forwarded_for_appends_the_client_ip_to_an_existing_value() {
    let (_b, clb) = one_echo();
    let r = clb.connect().request(
        "GET / HTTP/1.1\r\nHost: test.example\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n\r\n",
    );
    let lines = echoed_header_lines(&r);
    let xff: Vec<&String> = lines
        .iter()
        .filter(|l| l.to_ascii_lowercase().starts_with("x-forwarded-for:"))
        .collect();
    assert_eq!(xff.len(), 1, "{lines:?}");
    assert_eq!(
        xff[0].split_once(':').unwrap().1.trim(),
        "203.0.113.7, 10.0.0.1, 127.0.0.1"
    );
}

#[test]
fn x_forwarded_proto_and_port_replace_client_values() {
    let (_b, clb) = one_echo();
    let r = clb.connect().request(
        "GET / HTTP/1.1\r\nHost: test.example\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n\r\n",
    );
    let lines = echoed_header_lines(&r);
    let values = |name: &str| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    };
    assert_eq!(values("x-forwarded-proto"), ["http"], "{lines:?}");
    assert_eq!(
        values("x-forwarded-port"),
        [clb.port().to_string()],
        "{lines:?}"
    );
}

#[test]
fn http10_request_without_host_gets_the_listener_ip_as_host() {
    let (_b, clb) = one_echo();
    let lines = echoed_header_lines(&clb.connect().request("GET / HTTP/1.0\r\n\r\n"));
    let hosts: Vec<&String> = lines
        .iter()
        .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
        .collect();
    assert_eq!(hosts.len(), 1, "{lines:?}");
    assert_eq!(hosts[0].split_once(':').unwrap().1.trim(), "127.0.0.1");
}

#[test]
fn response_head_from_the_instance_reaches_the_client() {
    let backend = Backend::start(
        IP1,
        "i-1",
        Behavior::Raw(
            b"HTTP/1.1 201 Created\r\nX-Custom: a  b\r\nSet-Cookie: s=1\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        ),
    );
    let clb = Clb::http(&[backend.instance("zone-a")], &["--workers", "2"]);
    let r = clb.connect().request(&get("/"));
    assert_eq!(r.status_line, "HTTP/1.1 201 Created");
    assert_eq!(r.header("x-custom"), Some("a  b"));
    assert_eq!(r.header("set-cookie"), Some("s=1"));
    assert_eq!(r.body, b"ok");
}

#[test]
fn framing_look_alikes_in_a_response_do_not_reach_the_client() {
    // As in requests (README "Request framing"): a header whose letters spell a
    // framing header is not forwarded, so no client or cache after clb can frame the
    // response by it; the real Content-Length is what frames it.
    let backend = Backend::start(
        IP1,
        "i-1",
        Behavior::Raw(
            b"HTTP/1.1 200 OK\r\nTransfer_Encoding: chunked\r\nContent-Length: 2\r\nContent.Length: 99\r\nTRANSFER-encoding-: x\r\nX-Kept: yes\r\n\r\nok"
                .to_vec(),
        ),
    );
    let clb = Clb::http(&[backend.instance("zone-a")], &["--workers", "1"]);
    let r = clb.connect().request(&get("/"));
    assert_eq!(r.status, 200);
    let head = String::from_utf8_lossy(&r.head).to_ascii_lowercase();
    for alike in ["transfer_encoding", "content.length", "transfer-encoding-"] {
        assert!(!head.contains(alike), "{alike} reached the client: {head}");
    }
    assert_eq!(r.header("content-length"), Some("2"));
    assert_eq!(r.header("x-kept"), Some("yes"));
    assert_eq!(r.body, b"ok");
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let backend = Backend::start(IP1, "i-1", Behavior::CountBody);
    let clb = Clb::http(&[backend.instance("zone-a")], &["--workers", "2"]);
    let mut client = clb.connect();
    client.send(
        b"POST /up HTTP/1.1\r\nHost: test.example\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let interim = client
        .read_response(false)
        .expect("100 Continue before the body");
    assert_eq!(interim.head, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.send(b"hello");
    let r = client.response();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body_text(),
        upload_summary(&hash_of(&[b"hello"]), &hash_of(&[b"hello"]))
    );
}

#[test]
fn expect_header_is_removed_before_forwarding() {
    let (_b, clb) = one_echo();
    let mut client = clb.connect();
    client.send(
        b"POST /up HTTP/1.1\r\nHost: test.example\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let interim = client.read_response(false).expect("100 Continue");
    assert_eq!(interim.status, 100);
    client.send(b"hello");
    let lines = echoed_header_lines(&client.response());
    assert!(
        !lines
            .iter()
            .any(|l| l.to_ascii_lowercase().starts_with("expect:")),
        "{lines:?}"
    );
}

#[test]
fn http11_client_connection_stays_open_between_requests() {
    let (_b, clb) = one_echo();
    let mut client = clb.connect();
    for i in 0..5 {
        let r = client.request(&get(&format!("/{i}")));
        assert!(echoed(&r).starts_with(&format!("GET /{i} HTTP/1.1")));
    }
    assert!(client.stays_open(Duration::from_millis(300)));
}

#[test]
fn http11_connection_close_closes_the_client_connection_after_the_response() {
    let (_b, clb) = one_echo();
    let mut client = clb.connect();
    let r = client.request(&get_close("/"));
    assert_eq!(r.status, 200);
    client.expect_closed(Duration::from_secs(5)).unwrap();
}

#[test]
fn http10_client_connection_closes_after_the_response() {
    let (_b, clb) = one_echo();
    let mut client = clb.connect();
    let r = client.request("GET / HTTP/1.0\r\nHost: test.example\r\n\r\n");
    assert_eq!(r.status, 200);
    client.expect_closed(Duration::from_secs(5)).unwrap();
}

#[test]
fn http10_keep_alive_is_honoured_and_announced() {
    let (_b, clb) = one_echo();
    let mut client = clb.connect();
    let ka = "GET / HTTP/1.0\r\nHost: test.example\r\nConnection: keep-alive\r\n\r\n";
    let first = client.request(ka);
    assert_eq!(first.status, 200);
    assert!(
        first
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
        "head: {:?}",
        String::from_utf8_lossy(&first.head)
    );
    let second = client.request(ka);
    assert_eq!(second.status, 200);
}

#[test]
fn pipelined_requests_get_responses_in_order() {
    let (_b, clb) = one_echo();
    let mut client = clb.connect();
    client.send(format!("{}{}{}", get("/p1"), get("/p2"), get("/p3")).as_bytes());
    for path in ["/p1", "/p2", "/p3"] {
        let r = client.response();
        assert!(
            echoed(&r).starts_with(&format!("GET {path} HTTP/1.1\r\n")),
            "expected {path}, got {:?}",
            echoed(&r)
        );
    }
}

#[test]
fn head_response_has_no_body() {
    let backend = Backend::start(
        IP1,
        "i-1",
        Behavior::Fixed {
            len: 5000,
            chunk: None,
        },
    );
    let clb = Clb::http(&[backend.instance("zone-a")], &["--workers", "2"]);
    let mut client = clb.connect();
    client.send(b"HEAD / HTTP/1.1\r\nHost: test.example\r\n\r\n");
    let head = client.read_response(true).expect("HEAD response");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("5000"));
    // Body bytes after a HEAD response would corrupt the next response.
    let next = client.request(&get("/"));
    assert_eq!(next.status, 200);
    assert_eq!(next.body, pattern(5000));
}

/// Two requests to an instance answering `status_head`: both responses arrive
/// whole on one connection, so clb neither waited for nor sent a body.
fn bodiless_twice(status_head: &[u8], status: u16) {
    let backend = Backend::start(IP1, "i-1", Behavior::Raw(status_head.to_vec()));
    let clb = Clb::http(&[backend.instance("zone-a")], &["--workers", "2"]);
    let mut client = clb.connect();
    for _ in 0..2 {
        let r = client.request(&get("/"));
        assert_eq!(r.status, status);
        assert!(r.body.is_empty());
    }
    assert!(client.stays_open(Duration::from_millis(200)));
}

#[test]
fn no_content_204_response_has_no_body() {
    bodiless_twice(b"HTTP/1.1 204 No Content\r\nX-Instance: i-1\r\n\r\n", 204);
}

#[test]
fn not_modified_304_response_has_no_body() {
    bodiless_twice(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n", 304);
}

#[test]
fn idle_client_connection_is_closed_after_the_idle_timeout() {
    let backend = Backend::echo(IP1, "i-1");
    let clb = Clb::http(
        &[backend.instance("zone-a")],
        &["--workers", "2", "--idle-timeout", "1"],
    );
    let mut client = clb.connect();
    assert_eq!(client.request(&get("/")).status, 200);
    let idle_since = Instant::now();
    client.expect_closed(Duration::from_secs(5)).unwrap();
    assert!(
        idle_since.elapsed() >= Duration::from_millis(800),
        "closed after {:?}, before the 1 s idle timeout",
        idle_since.elapsed()
    );
}

#[test]
fn idle_pooled_instance_connection_is_closed_after_the_idle_timeout() {
    let backend = Backend::echo(IP1, "i-1");
    let clb = Clb::http(
        &[backend.instance("zone-a")],
        &["--workers", "2", "--idle-timeout", "1"],
    );
    let mut client = clb.connect();
    assert_eq!(client.request(&get("/")).status, 200);
    assert_eq!(
        backend.eofs(),
        0,
        "clb kept the instance connection for reuse"
    );
    assert!(
        wait_until(Duration::from_secs(5), || backend.eofs() >= 1),
        "the instance never saw clb close the idle connection (eofs {})",
        backend.eofs()
    );
}
