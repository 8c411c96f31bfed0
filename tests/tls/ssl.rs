//! SSL listeners: TLS terminated, the plaintext forwarded like a TCP listener's, byte
//! for byte, with a half-close passed on in each direction as the other side's
//! close_notify or EOF, and an instance that speaks first.

use crate::common::*;
use crate::*;
use std::time::Instant;

/// The session ends with clb's close_notify (the instance's half-close passed on), not
/// a bare TCP close.
fn expect_close_notify(client: &mut TlsClient, after: &str) {
    match client.expect_end(SOON) {
        Ok(true) => {}
        Ok(false) => panic!("{after}: clb closed the session without close_notify"),
        Err(e) => panic!("{after}: {e}"),
    }
}

/// Reads `len` bytes, which must be the first `len` of [`pattern`]: what the instance
/// sent.
fn expect_pattern(client: &mut TlsClient, len: usize) {
    let got = client
        .read_exactly(len)
        .unwrap_or_else(|e| panic!("the instance's bytes: {e}"));
    assert!(
        got == pattern(len),
        "the instance's bytes: {}",
        first_difference(&got, &pattern(len))
    );
}

#[test]
fn ssl_listener_echoes_1_mib_untouched_and_passes_the_client_half_close_on() {
    let backend = TcpBackend::echo(IP1, "i-echo");
    let lb = TlsClb::ssl(&[backend.instance("zone-a")], &[]);
    let mut client = lb.client();
    // In steps, each read back before the next is sent, so neither side's buffers can
    // fill up while the other waits (one blocking socket does both directions).
    const STEP: usize = 64 * 1024;
    let start = Instant::now();
    for offset in (0..MIB).step_by(STEP) {
        let piece = pattern_at(offset, STEP);
        client.send(&piece);
        let back = client
            .read_exactly(STEP)
            .unwrap_or_else(|e| panic!("echo of bytes {offset}..: {e}"));
        assert!(
            back == piece,
            "echo of bytes {offset}..: {}",
            first_difference(&back, &piece)
        );
        assert!(start.elapsed() < TRANSFER, "1 MiB took over {TRANSFER:?}");
    }
    client.half_close();
    expect_close_notify(&mut client, "after the client's half-close");
    let conn = finished_conn(&backend, &pattern(64), SOON);
    assert!(conn.eof && !conn.reset, "a half-close (EOF), not a reset");
    assert_eq!(conn.total, MIB, "bytes the instance received");
    assert!(
        conn.received == pattern(MIB),
        "the instance got plaintext, untouched: {}",
        first_difference(&conn.received, &pattern(MIB))
    );
}

#[test]
fn ssl_listener_passes_the_instance_half_close_on_while_the_client_keeps_sending() {
    const DOWN: usize = 256 * 1024;
    let backend = TcpBackend::start(IP2, "i-half", TcpBehavior::HalfCloseAfterLine(DOWN));
    let lb = TlsClb::ssl(&[backend.instance("zone-a")], &[]);
    let mut client = lb.client();
    client.send(b"half-close now\n");
    expect_pattern(&mut client, DOWN);
    expect_close_notify(&mut client, "after the instance's half-close");
    // The other direction stays open.
    let late = pattern(100 * 1024);
    client.send(&late);
    client.half_close();
    let conn = finished_conn(&backend, b"half-close now\n", SOON);
    assert!(
        conn.eof && !conn.reset,
        "the client's half-close came as EOF"
    );
    let mut want = b"half-close now\n".to_vec();
    want.extend_from_slice(&late);
    assert!(
        conn.received == want,
        "bytes after the instance's half-close: {}",
        first_difference(&conn.received, &want)
    );
}

#[test]
fn ssl_listener_delivers_what_the_instance_says_first_once_the_handshake_is_done() {
    // More than rustls may hold for a client before its handshake is done (64 KiB).
    const BANNER: usize = 200 * 1024;
    let backend = TcpBackend::start(IP2, "i-banner", TcpBehavior::BannerThenEcho(BANNER));
    let lb = TlsClb::ssl(&[backend.instance("zone-a")], &[]);
    let mut client = lb.client();
    expect_pattern(&mut client, BANNER);
    let ping = b"ping after the banner";
    client.send(ping);
    let back = client
        .read_exactly(ping.len())
        .unwrap_or_else(|e| panic!("echo after the banner: {e}"));
    assert_eq!(back, ping);
    client.half_close();
    expect_close_notify(&mut client, "after the client's half-close");
    let conn = finished_conn(&backend, ping, SOON);
    assert!(
        conn.eof && !conn.reset,
        "the client's half-close came as EOF"
    );
    assert_eq!(conn.received, ping, "what the instance received");
}

#[test]
fn ssl_listener_delivers_what_the_instance_sent_and_closed_before_the_handshake() {
    const SENT: usize = 16 * 1024;
    let backend = TcpBackend::start(IP1, "i-early", TcpBehavior::SendThenHalfClose(SENT));
    let lb = TlsClb::ssl(&[backend.instance("zone-a")], &[]);
    // The tunnel connects to the instance on accept, before any handshake: let the
    // instance send and half-close before the ClientHello leaves.
    let before = backend.accepted();
    let sock = tcp_connect(lb.clb.addr);
    assert!(
        wait_until(SOON, || backend.accepted() > before),
        "the tunnel never connected to the instance"
    );
    let mut client = TlsClient::try_handshake(sock, &lb.certs.client(), "localhost")
        .unwrap_or_else(|e| panic!("{e}"));
    expect_pattern(&mut client, SENT);
    expect_close_notify(&mut client, "after the instance's half-close");
    // The client's direction is still open.
    let late = b"sent after the instance's half-close";
    client.send(late);
    client.half_close();
    let conn = finished_conn(&backend, late, SOON);
    assert!(
        conn.eof && !conn.reset,
        "the client's half-close came as EOF"
    );
}
