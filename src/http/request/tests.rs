use super::*;
use crate::buffer::BufPool;

fn fwd() -> Forwarding {
    Forwarding {
        client_ip: "10.1.2.3".parse().unwrap(),
        local_ip: "127.0.0.1".parse().unwrap(),
        listener_port: 8080,
        scheme: "http",
        desync: Mode::Defensive,
    }
}

fn run(input: &[u8]) -> Result<(RequestInfo, String), HeadError> {
    run_in(Mode::Defensive, input)
}

fn run_in(mode: Mode, input: &[u8]) -> Result<(RequestInfo, String), HeadError> {
    let mut out = BufPool::new(1).get();
    let fwd = Forwarding {
        desync: mode,
        ..fwd()
    };
    match forward_head(input, &fwd, &mut out)? {
        Parse::Complete(info) => Ok((info, String::from_utf8_lossy(out.bytes()).into_owned())),
        Parse::Partial => panic!("partial"),
    }
}

#[test]
fn forwards_headers_byte_for_byte_and_adds_forwarded_headers() {
    let input = b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Odd:   spaced  value\r\nAccept: */*\r\n\r\n";
    let (info, head) = run(input).unwrap();
    assert_eq!(
        head,
        "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Odd:   spaced  value\r\nAccept: */*\r\n\
         X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 8080\r\n\r\n"
    );
    assert_eq!(info.head_len, input.len());
    assert!(info.keep_alive && info.idempotent && !info.http10);
    assert_eq!(info.body, Body::Done);
}

#[test]
fn appends_to_existing_forwarded_for_and_replaces_proto_and_port() {
    let input = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\n\r\n";
    let (_, head) = run(input).unwrap();
    assert!(
        head.contains("X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.1.2.3\r\n"),
        "{head}"
    );
    assert!(head.contains("X-Forwarded-Proto: http\r\n"));
    assert!(head.contains("X-Forwarded-Port: 8080\r\n"));
    assert!(!head.contains("https"));
    assert!(!head.contains("Port: 1\r\n"));
}

#[test]
fn drops_hop_by_hop_and_connection_named_headers() {
    let input = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Private\r\nX-Private: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nX-Public: p\r\n\r\n";
    let (_, head) = run(input).unwrap();
    for gone in [
        "Connection",
        "X-Private",
        "Keep-Alive",
        "TE:",
        "Upgrade",
        "Proxy-Connection",
    ] {
        assert!(!head.contains(gone), "{gone} in {head}");
    }
    assert!(head.contains("X-Public: p\r\n"));
}

#[test]
fn http10_gets_version_11_and_host_from_the_listener_address() {
    let (info, head) = run(b"GET /x HTTP/1.0\r\n\r\n").unwrap();
    assert!(head.starts_with("GET /x HTTP/1.1\r\n"));
    assert!(head.contains("Host: 127.0.0.1\r\n"));
    assert!(info.http10 && !info.keep_alive);
    let (info, _) = run(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    assert!(info.keep_alive);
}

#[test]
fn connection_close_ends_keep_alive() {
    let (info, _) = run(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").unwrap();
    assert!(!info.keep_alive);
}

#[test]
fn framing_follows_rfc_order() {
    let (info, _) = run(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n").unwrap();
    assert_eq!(info.body, Body::Length(10));
    assert!(!info.idempotent);
    let (info, head) = run(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\n",
    )
    .unwrap();
    assert!(matches!(info.body, Body::Chunked(_)));
    assert!(info.close_after);
    assert!(!head.contains("Content-Length"));
    assert!(head.contains("Transfer-Encoding: chunked"));
    let (info, head) =
        run(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n")
            .unwrap();
    assert_eq!(info.body, Body::Length(3));
    assert_eq!(head.matches("Content-Length").count(), 1);
}

#[test]
fn refuses_ambiguous_or_bad_framing() {
    for bad in [
        &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
        b"\x00\x01\x02 / HTTP/1.1\r\n\r\n",
    ] {
        // Whatever the mode (monitor too): clb never forwards what it cannot frame.
        for mode in [Mode::Monitor, Mode::Defensive, Mode::Strictest] {
            assert!(
                matches!(run_in(mode, bad), Err(HeadError::Malformed(_) | HeadError::Desync(_))),
                "{mode:?} {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

#[test]
fn expect_continue_is_noted_and_removed() {
    let (info, head) =
        run(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
            .unwrap();
    assert!(info.expect_continue);
    assert!(!head.contains("Expect"));
}

#[test]
fn limits_give_405_414_431() {
    let mut long_method = vec![b'A'; 128];
    long_method.extend_from_slice(b" / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(run(&long_method).unwrap_err(), HeadError::MethodTooLong);

    let mut out = BufPool::new(1).get();
    let mut long_uri = b"GET /".to_vec();
    long_uri.extend(std::iter::repeat_n(b'a', MAX_REQUEST_LINE + 10));
    assert_eq!(
        forward_head(&long_uri, &fwd(), &mut out).unwrap_err(),
        HeadError::UriTooLong
    );

    let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        many.extend(format!("X-{i}: v\r\n").bytes());
    }
    many.extend(b"\r\n");
    assert_eq!(run(&many).unwrap_err(), HeadError::HeadersTooLarge);

    let mut big = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    while big.len() < MAX_HEAD + 10 {
        big.extend(format!("X-Big: {}\r\n", "v".repeat(1000)).bytes());
    }
    assert_eq!(
        forward_head(&big, &fwd(), &mut out).unwrap_err(),
        HeadError::HeadersTooLarge
    );
}

#[test]
fn partial_heads_wait() {
    let mut out = BufPool::new(1).get();
    assert_eq!(
        forward_head(b"GET / HTTP/1.1\r\nHost: h\r\n", &fwd(), &mut out),
        Ok(Parse::Partial)
    );
    assert_eq!(forward_head(b"", &fwd(), &mut out), Ok(Parse::Partial));
}

#[test]
fn ipv6_clients_are_written_bare() {
    let mut out = BufPool::new(1).get();
    let f = Forwarding {
        client_ip: "::1".parse().unwrap(),
        local_ip: "::1".parse().unwrap(),
        ..fwd()
    };
    let Ok(Parse::Complete(_)) = forward_head(b"GET / HTTP/1.0\r\n\r\n", &f, &mut out) else {
        panic!()
    };
    let head = String::from_utf8_lossy(out.bytes());
    assert!(head.contains("X-Forwarded-For: ::1\r\n"));
    assert!(head.contains("Host: [::1]\r\n"));
}

#[test]
fn addresses_and_ports_are_written_as_display_would() {
    let mut out = BufPool::new(1).get();
    for ip in [
        "0.0.0.0",
        "10.1.2.3",
        "255.255.255.255",
        "192.0.2.100",
        "::1",
        "2001:db8::7",
    ] {
        out.clear();
        let ip: IpAddr = ip.parse().unwrap();
        push_ip(&mut out, ip);
        assert_eq!(out.bytes(), ip.to_string().as_bytes());
    }
    for n in [0u64, 7, 80, 443, 65535, u64::MAX] {
        out.clear();
        push_decimal(&mut out, n);
        assert_eq!(out.bytes(), n.to_string().as_bytes());
    }
}

#[test]
fn clb_writes_the_framing_it_read_in_every_mode() {
    for mode in [Mode::Monitor, Mode::Defensive] {
        // The case: the look-alike goes, the length clb reads by is written.
        let (info, head) = run_in(
            mode,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer_Encoding: chunked\r\n\r\n",
        )
        .unwrap();
        assert_eq!(info.body, Body::Length(40));
        assert!(head.contains("\r\nContent-Length: 40\r\n"), "{head}");
        assert!(!head.contains("Transfer_Encoding"), "{head}");
    }
    let (info, head) = run_in(
        Mode::Monitor,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:  007\r\nConnection: content-length\r\n\r\n",
    )
    .unwrap();
    assert_eq!(info.body, Body::Length(7));
    assert!(head.contains("\r\nContent-Length: 7\r\n"), "{head}");
    let (info, head) = run_in(
        Mode::Monitor,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\nTransfer-Encoding: ,chunked\r\n\r\n",
    )
    .unwrap();
    assert!(matches!(info.body, Body::Chunked(_)) && info.close_after);
    assert_eq!(head.matches("Transfer-Encoding").count(), 1, "{head}");
    assert!(
        head.contains("\r\nTransfer-Encoding: gzip, chunked\r\n"),
        "{head}"
    );
    assert!(!head.contains("Content-Length"), "{head}");
    for bad in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;q=1\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \"chunked\"\r\nContent-Length: 1\r\n\r\n",
    ] {
        assert!(matches!(run_in(Mode::Monitor, bad), Err(HeadError::Malformed(_))));
    }
}

#[test]
fn targets_hosts_and_versions() {
    let (_, head) =
        run(b"GET http://o.example/p HTTP/1.1\r\nHost: x\r\nAccept: a\r\n\r\n").unwrap();
    assert!(
        head.starts_with("GET /p HTTP/1.1\r\nHost: o.example\r\nAccept: a\r\n"),
        "{head}"
    );
    let (_, head) = run(b"OPTIONS http://o.example HTTP/1.0\r\n\r\n").unwrap();
    assert!(head.starts_with("OPTIONS * HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nHost: o.example\r\n"), "{head}");
    let (info, head) = run(b"GET /v HTTP/1.3\r\nHost: x\r\n\r\n").unwrap();
    assert!(
        head.starts_with("GET /v HTTP/1.1\r\n") && !info.http10,
        "{head}"
    );
    assert_eq!(info.verdict.tier, crate::http::desync::Tier::Acceptable);
    assert!(run(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n").is_err());
    assert!(run(b"GET / HTTP/1.12\r\nHost: x\r\n\r\n").is_err());
    for bad in [
        &b"GET / HTTP/1.1\r\nHost: \r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\nHost: b\r\n\r\n",
    ] {
        assert!(matches!(run(bad), Err(HeadError::Malformed(_))));
    }
}
