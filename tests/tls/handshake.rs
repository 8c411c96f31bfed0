//! Handshakes: protocol versions and the policy's suites, policies refused at start, and
//! clients that are not TLS or stop partway (a plaintext request, half a record, half a
//! real ClientHello) while clb keeps serving everyone else.

use crate::common::tls::*;
use crate::common::*;
use crate::*;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::ServerName;
use rustls::version::{TLS12, TLS13};
use rustls::{CipherSuite, ClientConfig, ClientConnection, ProtocolVersion};
use std::io::Write;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn tls_12_and_tls_13_clients_get_the_policy_suites_in_server_order() {
    let backend = Backend::echo(IP1, "i-1");
    let lb = TlsClb::https(
        &[backend.instance("zone-a")],
        &["--ssl-policy", "ELBSecurityPolicy-TLS-1-2-2017-01"],
    );
    // ring's client order puts AES-256 first; ELB's policies, and clb, prefer the
    // server's order, which starts with AES-128 (the test key is ECDSA).
    for (version, want_version, want_suite) in [
        (
            &TLS12,
            ProtocolVersion::TLSv1_2,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            &TLS13,
            ProtocolVersion::TLSv1_3,
            CipherSuite::TLS13_AES_128_GCM_SHA256,
        ),
    ] {
        let mut client = TlsClient::open(lb.clb.addr, &lb.certs.ca.client(&[version]), "localhost");
        assert_eq!(client.stream.conn.protocol_version(), Some(want_version));
        let suite = client
            .stream
            .conn
            .negotiated_cipher_suite()
            .expect("a suite")
            .suite();
        assert_eq!(suite, want_suite, "{want_version:?}");
        let r = client.request(&get("/version"));
        assert_eq!(r.status, 200, "{want_version:?}: {}", r.status_line);
        assert_eq!(echoed_values(&r, "x-forwarded-proto"), ["https"]);
    }
    // A TLS 1.2 client whose only suite the policy lacks (CHACHA20) is refused.
    let chacha_only = CryptoProvider {
        cipher_suites: vec![ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256],
        ..ring::default_provider()
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(lb.certs.ca.der.clone()).expect("root");
    let config = ClientConfig::builder_with_provider(Arc::new(chacha_only))
        .with_protocol_versions(&[&TLS12])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let refused = TlsClient::try_open(lb.clb.addr, &Arc::new(config), "localhost");
    assert!(
        refused.is_err(),
        "TLS 1.2 with ECDHE-ECDSA-CHACHA20-POLY1305 only is not in the policy"
    );
    assert_eq!(backend.requests(), 2);
}

#[test]
fn security_policies_rustls_cannot_honour_are_refused_at_start() {
    let listener = format!("https:{}:http:80", free_port("127.0.0.1"));
    let line = assert_refused(
        &[
            "--listener",
            &listener,
            "--ssl-policy",
            "ELBSecurityPolicy-2016-08",
        ],
        &["--ssl-policy", "ELBSecurityPolicy-2016-08", "rustls"],
    );
    assert!(
        line.contains("ELBSecurityPolicy-TLS-1-2-2017-01"),
        "the refusal names the policy to use: {line:?}"
    );
    assert_refused(
        &["--listener", &listener, "--ssl-policy", "made-up-policy"],
        &[
            "--ssl-policy",
            "made-up-policy",
            "ELBSecurityPolicy-TLS-1-2-2017-01",
        ],
    );
}

/// The first bytes of a ClientHello record, and no more.
const HALF_A_RECORD: [u8; 6] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];

#[test]
fn a_plaintext_client_gets_an_alert_and_a_close_and_clb_keeps_serving() {
    let backend = Backend::echo(IP1, "i-1");
    let mut lb = TlsClb::https(&[backend.instance("zone-a")], &[]);
    let mut raw = tcp_connect(lb.clb.addr);
    raw.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write plaintext");
    let got = read_until_closed(&mut raw, SOON).unwrap_or_else(|e| panic!("plaintext client: {e}"));
    assert!(
        !got.starts_with(b"HTTP/"),
        "an HTTP answer on a TLS port: {:?}",
        preview(&got)
    );
    // Anything sent is a TLS alert record (content type 21), nothing else.
    assert!(
        got.is_empty() || got[0] == 0x15,
        "not a TLS alert: {:?}",
        preview(&got)
    );
    // A client that stops halfway through a record, then goes away.
    let mut partial = tcp_connect(lb.clb.addr);
    partial
        .write_all(&HALF_A_RECORD)
        .expect("write a partial record");
    partial.shutdown(Shutdown::Write).expect("half-close");
    read_until_closed(&mut partial, SOON).unwrap_or_else(|e| panic!("partial record: {e}"));
    // A client that connects and goes away without a byte.
    drop(tcp_connect(lb.clb.addr));
    assert_eq!(backend.requests(), 0, "nothing may reach the instance");
    assert!(lb.clb.is_running(), "clb died");
    let r = lb.client().request(&get("/after-garbage"));
    assert!(echoed(&r).starts_with("GET /after-garbage HTTP/1.1\r\n"));
}

/// Asserts that a connection clb closed `after` its last byte was closed at the idle
/// timeout, with `--idle-timeout 1`.
fn assert_at_idle_timeout(what: &str, after: Duration) {
    assert!(
        after >= Duration::from_millis(900),
        "{what}: closed after only {after:?} (--idle-timeout 1)"
    );
    assert!(
        after <= Duration::from_millis(3000),
        "{what}: closed after {after:?} (--idle-timeout 1)"
    );
}

#[test]
fn a_handshake_that_never_finishes_is_closed_at_the_idle_timeout() {
    let backend = Backend::echo(IP1, "i-1");
    let lb = TlsClb::https(
        &[backend.instance("zone-a")],
        &["--workers", "1", "--idle-timeout", "1"],
    );
    let started = Instant::now();
    let mut silent = tcp_connect(lb.clb.addr);
    let mut partial = tcp_connect(lb.clb.addr);
    // The first bytes of a ClientHello record, and then nothing: the socket stays open.
    partial
        .write_all(&HALF_A_RECORD)
        .expect("write a partial record");
    for (what, stream) in [("no byte", &mut silent), ("half a record", &mut partial)] {
        read_until_closed(stream, SOON).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_at_idle_timeout(what, started.elapsed());
    }
    assert_eq!(lb.client().request(&get("/after")).status, 200);
}

/// The first half of the ClientHello a rustls client for `localhost` sends first.
fn half_a_client_hello(config: &Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").expect("name");
    let mut conn = ClientConnection::new(Arc::clone(config), name).expect("client connection");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("write to memory");
    }
    assert_eq!(hello[0], 0x16, "a handshake record: {:?}", preview(&hello));
    hello.truncate(hello.len() / 2);
    hello
}

/// Makes a request on `session` and one on a new session; panics naming `when` if
/// either fails.
fn serve_both(lb: &TlsClb, session: &mut TlsClient, when: &str) {
    let slug = when.replace(' ', "-");
    let r = session
        .try_request(&get(&format!("/kept/{slug}")))
        .unwrap_or_else(|e| panic!("{when}: the open session: {e}"));
    assert_eq!(r.status, 200, "{when}: the open session: {}", r.status_line);
    let mut fresh = TlsClient::try_open(lb.clb.addr, &lb.certs.client(), "localhost")
        .unwrap_or_else(|e| panic!("{when}: a new session: {e}"));
    let r = fresh
        .try_request(&get(&format!("/fresh/{slug}")))
        .unwrap_or_else(|e| panic!("{when}: a new session: {e}"));
    assert_eq!(r.status, 200, "{when}: a new session: {}", r.status_line);
}

#[test]
fn half_a_client_hello_then_a_close_is_dropped_at_once_and_clb_keeps_serving() {
    let backend = Backend::echo(IP1, "i-1");
    // One worker: the cut-short handshakes share the event loop with everyone else.
    let lb = TlsClb::https(&[backend.instance("zone-a")], &["--workers", "1"]);
    let mut session = lb.client();
    serve_both(&lb, &mut session, "before");
    let half = half_a_client_hello(&lb.certs.client());
    // Half a hello, then a full close.
    for i in 0..20 {
        let mut gone = tcp_connect(lb.clb.addr);
        gone.write_all(&half).expect("write half a ClientHello");
        drop(gone);
        if i % 5 == 0 {
            serve_both(&lb, &mut session, &format!("after close {i}"));
        }
    }
    // Half a hello, then a half-close: clb closes its side long before the idle
    // timeout (60 s), without a byte of handshake.
    let mut ended = tcp_connect(lb.clb.addr);
    ended.write_all(&half).expect("write half a ClientHello");
    ended.shutdown(Shutdown::Write).expect("half-close");
    let got = read_until_closed(&mut ended, SOON)
        .unwrap_or_else(|e| panic!("half a ClientHello, then EOF: {e}"));
    assert!(
        got.is_empty() || got[0] == 0x15,
        "only an alert may come back: {:?}",
        preview(&got)
    );
    serve_both(&lb, &mut session, "at the end");
    assert_eq!(backend.requests(), 2 * 6, "requests the instance saw");
}

#[test]
fn half_a_client_hello_then_silence_is_closed_at_the_idle_timeout_while_others_are_served() {
    let backend = Backend::echo(IP1, "i-1");
    let lb = TlsClb::https(
        &[backend.instance("zone-a")],
        &["--workers", "1", "--idle-timeout", "1"],
    );
    let mut session = lb.client();
    let half = half_a_client_hello(&lb.certs.client());
    let mut silent = tcp_connect(lb.clb.addr);
    silent.write_all(&half).expect("write half a ClientHello");
    let sent = Instant::now();
    // While the half handshake waits, the open session and new ones are served.
    let mut rounds = 0;
    let closed_at = loop {
        if read_until_closed(&mut silent, Duration::from_millis(20)).is_ok() {
            break sent.elapsed();
        }
        assert!(
            sent.elapsed() < SOON,
            "half a ClientHello still open after {SOON:?} (--idle-timeout 1)"
        );
        serve_both(&lb, &mut session, &format!("round {rounds}"));
        rounds += 1;
    };
    assert_at_idle_timeout("half a ClientHello", closed_at);
    assert!(
        rounds >= 3,
        "only {rounds} rounds of requests while it waited"
    );
    serve_both(&lb, &mut session, "after the close");
    assert_eq!(backend.requests(), 2 * (rounds + 1));
}
