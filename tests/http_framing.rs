//! Issue 12: what clb forwards is one request a strict server frames exactly as clb did,
//! whatever the client sent and whatever the desync mode; and the messages RFC 9112
//! refuses or rewrites (Host, request-target forms, chunk lines, versions, 100-continue)
//! are refused or rewritten. The instance is a [`Recorder`]: raw bytes, read with a strict
//! parser that shares no code with clb's.

mod common;

use clb::fuzzing::strict_http::{Framing, Request};
use common::recorder::{clb_before, strict_requests, Recorder};
use common::*;
use std::time::Duration;

const MODES: [&str; 3] = ["monitor", "defensive", "strictest"];

/// Sends `raw` on a new connection; the answer, whether clb closed the connection after
/// it, and the requests the instance read (every byte it got must be whole requests).
fn through(clb: &Clb, recorder: &Recorder, raw: &[u8]) -> (Response, bool, Vec<Request>) {
    let before = recorder.received();
    let mut client = clb.connect();
    client.send(raw);
    let response = client.response();
    let closed = client.expect_closed(Duration::from_millis(300)).is_ok();
    let mut requests = Vec::new();
    for delta in recorder.since(&before) {
        match strict_requests(&delta) {
            Ok(mut got) => requests.append(&mut got),
            Err(e) => panic!("{}: {e}", String::from_utf8_lossy(raw)),
        }
    }
    (response, closed, requests)
}

/// 400, the connection closed, and nothing at the instance.
fn assert_refused(clb: &Clb, recorder: &Recorder, raw: &[u8]) {
    let before = recorder.received();
    let (response, closed, requests) = through(clb, recorder, raw);
    let what = String::from_utf8_lossy(raw);
    assert_eq!(response.status, 400, "{what}");
    assert!(closed, "connection kept after 400: {what}");
    assert!(requests.is_empty(), "{what} reached the instance");
    assert!(
        recorder.since(&before).is_empty(),
        "{what}: bytes reached the instance"
    );
}

/// The instance's 200, and the one request it read.
fn forwarded(clb: &Clb, recorder: &Recorder, raw: &[u8]) -> Request {
    let (response, _, requests) = through(clb, recorder, raw);
    let what = String::from_utf8_lossy(raw);
    assert_eq!(response.status, 200, "{what}");
    let [request] = <[Request; 1]>::try_from(requests)
        .unwrap_or_else(|r| panic!("{what}: the instance read {} requests", r.len()));
    request
}

#[test]
fn underscore_transfer_encoding_beside_content_length_smuggles_nothing() {
    let body = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(body.len(), 40);
    let mut raw =
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer_Encoding: chunked\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(body);
    let recorder = Recorder::start(IP1);
    for mode in MODES {
        let clb = clb_before(mode, &recorder);
        if mode == "strictest" {
            // Ambiguous (a look-alike of Transfer-Encoding): blocked.
            assert_refused(&clb, &recorder, &raw);
            continue;
        }
        let request = forwarded(&clb, &recorder, &raw);
        assert_eq!(request.target, b"/", "{mode}");
        assert_eq!(request.framing, Framing::Length(40), "{mode}");
        assert_eq!(request.payload, body, "{mode}");
    }
}

#[test]
fn framing_look_alikes_never_reach_the_instance() {
    // Monitor forwards them all; defensive blocks the Severe ones (a look-alike counts
    // as a second Content-Length for the classifier), so monitor is where they matter.
    let recorder = Recorder::start(IP1);
    for mode in ["monitor"] {
        let clb = clb_before(mode, &recorder);
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nContent_Length: 5\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent.Length: 30\r\nContent-Length: 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContentLength: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ] {
            let request = forwarded(&clb, &recorder, raw);
            let payload = if raw.starts_with(b"GET") { &b""[..] } else { b"abc" };
            assert_eq!(request.payload, payload, "{mode}");
        }
    }
}

#[test]
fn transfer_encoding_clb_does_not_frame_by_is_refused_or_rewritten() {
    let recorder = Recorder::start(IP1);
    for mode in MODES {
        let clb = clb_before(mode, &recorder);
        for raw in [
            // RFC 9112 §6.3 rule 4: the final coding is not chunked.
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n",
            // Transfer-Encoding means nothing in HTTP/1.0.
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ] {
            assert_refused(&clb, &recorder, raw);
        }
        if mode != "monitor" {
            // Severe for the classifier (an empty coding; TE beside CL is Ambiguous).
            continue;
        }
        // A list clb reads as chunked reaches the instance as clb's own header.
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: , chunked\r\nContent-Length: 99\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let request = forwarded(&clb, &recorder, raw);
        assert_eq!(request.framing, Framing::Chunked, "{mode}");
        assert_eq!(request.payload, b"abc", "{mode}");
        // `Connection` cannot take the framing header away from the body.
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let request = forwarded(&clb, &recorder, raw);
        assert_eq!(request.framing, Framing::Chunked, "{mode}");
    }
}

#[test]
fn invalid_host_and_asterisk_targets_are_400() {
    let recorder = Recorder::start(IP1);
    let clb = clb_before("monitor", &recorder);
    for raw in [
        &b"GET / HTTP/1.1\r\nHost:\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: localhost:8080/path\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: user@localhost\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert_refused(&clb, &recorder, raw);
    }
    let request = forwarded(&clb, &recorder, b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(request.target, b"*");
}

#[test]
fn absolute_form_goes_out_in_origin_form_with_the_target_host() {
    let recorder = Recorder::start(IP1);
    let clb = clb_before("defensive", &recorder);
    let request = forwarded(
        &clb,
        &recorder,
        b"GET http://other.example/p?q=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(
        (request.target.as_slice(), request.host.as_slice()),
        (&b"/p?q=1"[..], &b"other.example"[..])
    );
    let request = forwarded(
        &clb,
        &recorder,
        b"POST HTTP://Other.Example:8080 HTTP/1.0\r\nContent-Length: 2\r\n\r\nab",
    );
    assert_eq!(
        (request.target.as_slice(), request.host.as_slice()),
        (&b"/"[..], &b"Other.Example:8080"[..])
    );
    assert_eq!(request.payload, b"ab");
}

#[test]
fn invalid_chunk_lines_are_400_and_never_reach_the_instance() {
    let recorder = Recorder::start(IP1);
    for mode in MODES {
        let clb = clb_before(mode, &recorder);
        for line in [&b"5;"[..], b"5;bad[=x", b"5;a=\0", b"5 ", b"5;a=\"b"] {
            let mut raw =
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            raw.extend_from_slice(line);
            raw.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
            let before = recorder.received();
            let (response, closed, requests) = through(&clb, &recorder, &raw);
            let what = String::from_utf8_lossy(line);
            assert_eq!(response.status, 400, "{mode} {what}");
            assert!(closed, "{mode} {what}");
            assert!(requests.is_empty(), "{mode} {what}");
            // The head may have gone ahead; the bad line never does.
            for delta in recorder.since(&before) {
                assert!(
                    !delta.windows(line.len()).any(|w| w == line) || line == b"5 ",
                    "{mode} {what} reached the instance"
                );
                assert!(!delta.ends_with(b"\r\n0\r\n\r\n"), "{mode} {what}");
            }
        }
        // Valid extensions pass.
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 ; a=b;c=\"d e\"\r\nhello\r\n0\r\n\r\n";
        if mode != "strictest" {
            assert_eq!(forwarded(&clb, &recorder, raw).payload, b"hello");
        }
    }
}

#[test]
fn higher_minor_versions_are_forwarded_as_http_11() {
    let recorder = Recorder::start(IP1);
    let clb = clb_before("defensive", &recorder);
    let request = forwarded(
        &clb,
        &recorder,
        b"POST /v HTTP/1.2\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
    );
    assert_eq!(
        (request.target.as_slice(), request.payload.as_slice()),
        (&b"/v"[..], &b"ab"[..])
    );
    // Acceptable (NonCompliantVersion): strictest blocks it, as ELB does.
    let clb = clb_before("strictest", &recorder);
    assert_refused(&clb, &recorder, b"GET / HTTP/1.2\r\nHost: x\r\n\r\n");
}

#[test]
fn no_100_continue_when_the_body_came_with_the_head() {
    let recorder = Recorder::start(IP1);
    let clb = clb_before("defensive", &recorder);
    for raw in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    ] {
        let mut client = clb.connect();
        client.send(raw);
        let first = client.response();
        assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(raw));
    }
    // The body still to come: 100 first (spec §1.17), then the instance's answer.
    let mut client = clb.connect();
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(client.response().status, 100);
    client.send(b"abc");
    assert_eq!(client.response().status, 200);
}
