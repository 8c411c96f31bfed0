//! TCP listeners (issue 6 items 5 and 6; spec §1.9, §4.1, §6.4, §8): bytes forwarded
//! both ways untouched, half-close passed on in either direction, round robin per
//! connection, a refused instance skipped, no instance closing the client at once, the
//! idle timeout closing both sides, and PROXY protocol v1 and v2 headers byte-exact at
//! the instance for IPv4 and IPv6 clients.
//!
//! The instances are [`TcpBackend`]s: thread-per-connection echo (or send-then-half-close)
//! servers that log every byte they receive, so each test checks what the instance
//! really got. `Clb::tcp` health-checks them with `TCP:80` (each instance is probed on
//! its own port; a probe connection carries no byte).

mod common;

use common::*;
use std::io::Write;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
/// How long a whole transfer may take before the test gives up on it.
const TRANSFER: Duration = Duration::from_secs(30);
/// How long something that should be immediate may take.
const SOON: Duration = Duration::from_secs(5);

/// Sends `payload` on a new connection through `addr`, half-closes, and returns
/// everything that came back before EOF (the connection's own address and clb's too).
fn round_trip(addr: SocketAddr, payload: &[u8]) -> (Vec<u8>, SocketAddr, SocketAddr) {
    let mut stream = tcp_connect(addr);
    let local = stream.local_addr().expect("local addr");
    let peer = stream.peer_addr().expect("peer addr");
    stream
        .write_all(payload)
        .unwrap_or_else(|e| panic!("write to clb: {e}"));
    stream.shutdown(Shutdown::Write).expect("half-close");
    let back = read_to_eof(&mut stream, payload.len() + 4096, TRANSFER)
        .unwrap_or_else(|e| panic!("echo of {:?}: {e}", preview(payload)));
    (back, local, peer)
}

#[test]
fn one_mib_is_echoed_byte_exact_and_the_client_half_close_is_passed_on() {
    let backend = TcpBackend::echo(IP1, "i-echo");
    let clb = Clb::tcp(&[backend.instance("zone-a")], &["--workers", "2"]);
    let mut stream = tcp_connect(clb.addr);
    let mut writer = stream.try_clone().expect("clone");
    let sender = thread::spawn(move || {
        let ok = write_pattern(&mut writer, 0, MIB);
        let shut = writer.shutdown(Shutdown::Write);
        (ok, shut.is_ok())
    });
    let back = read_to_eof(&mut stream, MIB + 1, TRANSFER);
    let (wrote, shut) = sender.join().expect("writer thread");
    assert!(
        wrote && shut,
        "writing 1 MiB to clb failed (written {wrote}, shut {shut})"
    );
    let back = back.unwrap_or_else(|e| panic!("reading the echo of 1 MiB: {e}"));
    let want = pattern(MIB);
    assert!(back == want, "echo: {}", first_difference(&back, &want));

    // The instance got exactly the client's bytes, then EOF (the half-close).
    let conn = finished_conn(&backend, &want[..64], SOON);
    assert!(conn.eof, "the instance saw a reset, not EOF");
    assert_eq!(conn.total, MIB);
    assert!(
        conn.received == want,
        "instance got: {}",
        first_difference(&conn.received, &want)
    );
}

#[test]
fn the_instance_half_close_is_passed_on_while_the_client_keeps_sending() {
    const DOWN: usize = MIB;
    const UP: usize = 256 * 1024;
    let backend = TcpBackend::start(IP1, "i-half", TcpBehavior::SendThenHalfClose(DOWN));
    let clb = Clb::tcp(&[backend.instance("zone-a")], &["--workers", "2"]);
    let mut stream = tcp_connect(clb.addr);
    let mut writer = stream.try_clone().expect("clone");
    let (saw_eof, eof_seen) = mpsc::channel::<()>();
    let sender = thread::spawn(move || -> Result<(), String> {
        if !write_pattern(&mut writer, 0, UP) {
            return Err("writing the first part failed".into());
        }
        eof_seen
            .recv_timeout(TRANSFER)
            .map_err(|_| "the reader never saw EOF".to_string())?;
        // The instance has closed its side: this direction still carries bytes.
        if !write_pattern(&mut writer, UP, UP) {
            return Err("writing after the instance's half-close failed".into());
        }
        writer
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("half-close: {e}"))
    });
    let down = read_to_eof(&mut stream, DOWN + 1, TRANSFER);
    let _ = saw_eof.send(());
    let sent = sender.join().expect("writer thread");
    let down = down.unwrap_or_else(|e| panic!("reading what the instance sent: {e}"));
    let want = pattern(DOWN);
    assert!(
        down == want,
        "client got: {}",
        first_difference(&down, &want)
    );
    if let Err(e) = sent {
        panic!("client → instance after the instance's half-close: {e}");
    }

    let want_up = pattern(2 * UP);
    let conn = finished_conn(&backend, &want_up[..64], TRANSFER);
    assert!(conn.eof, "the instance saw a reset, not EOF");
    assert!(
        conn.received == want_up,
        "instance got: {}",
        first_difference(&conn.received, &want_up)
    );
}

#[test]
fn connections_rotate_over_three_instances() {
    let backends = [
        TcpBackend::echo(IP1, "i-1"),
        TcpBackend::echo(IP2, "i-2"),
        TcpBackend::echo(IP3, "i-3"),
    ];
    let instances: Vec<Instance> = backends.iter().map(|b| b.instance("zone-a")).collect();
    let clb = Clb::tcp(&instances, &["--workers", "1"]);
    let mut order = Vec::new();
    for i in 0..9 {
        let payload = format!("rr-{i}\n").into_bytes();
        let (back, _, _) = round_trip(clb.addr, &payload);
        assert_eq!(back, payload, "connection {i}: {:?}", preview(&back));
        let owners: Vec<usize> = (0..3)
            .filter(|&b| backends[b].conn_starting_with(&payload).is_some())
            .collect();
        assert_eq!(
            owners.len(),
            1,
            "connection {i} reached instances {owners:?}"
        );
        order.push(owners[0]);
    }
    let names: Vec<&str> = order.iter().map(|&b| backends[b].name()).collect();
    println!("instances in connection order: {names:?}");
    let mut first = order[..3].to_vec();
    first.sort();
    assert_eq!(first, [0, 1, 2], "the first three connections: {names:?}");
    for i in 3..9 {
        assert_eq!(order[i], order[i % 3], "not a rotation: {names:?}");
    }
    for b in &backends {
        assert_eq!(b.data_conns().len(), 3, "{}: {names:?}", b.name());
    }
}

#[test]
fn a_refused_instance_is_skipped_without_the_client_noticing() {
    let mut dead = TcpBackend::echo(IP1, "i-dead");
    let backends = [TcpBackend::echo(IP2, "i-2"), TcpBackend::echo(IP3, "i-3")];
    let clb = Clb::tcp(
        &[
            dead.instance("zone-a"),
            backends[0].instance("zone-a"),
            backends[1].instance("zone-a"),
        ],
        &["--workers", "1"],
    );
    // InService, but refusing connections from now on (the next probe is 30 s away).
    dead.kill();
    assert!(
        TcpStream::connect_timeout(&dead.addr, Duration::from_secs(1)).is_err(),
        "{} still accepts connections",
        dead.addr
    );
    for i in 0..6 {
        let payload = format!("skip-{i}\n").into_bytes();
        let (back, _, _) = round_trip(clb.addr, &payload);
        assert_eq!(back, payload, "connection {i}: {:?}", preview(&back));
    }
    let counts: Vec<usize> = backends.iter().map(|b| b.data_conns().len()).collect();
    assert_eq!(
        counts.iter().sum::<usize>(),
        6,
        "per live instance: {counts:?}"
    );
    assert!(
        counts.iter().all(|&n| n >= 2),
        "the live instances should share the connections: {counts:?}"
    );
}

#[test]
fn without_an_instance_in_service_the_client_is_closed_at_once() {
    // No instance at all.
    let clb = Clb::tcp(&[], &[]);
    let mut stream = tcp_connect(clb.addr);
    let started = Instant::now();
    expect_eof(&mut stream, SOON).unwrap_or_else(|e| panic!("no instance: {e}"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed only after {:?}",
        started.elapsed()
    );

    // An instance that never passes a health check (nothing listens there).
    let nobody = Instance::new(
        "i-nobody",
        SocketAddr::new(ip(IP1), free_port(IP1)),
        "zone-a",
    );
    let clb = Clb::tcp(&[nobody], &[]);
    let mut stream = tcp_connect(clb.addr);
    let started = Instant::now();
    // Bytes from the client change nothing.
    stream.write_all(b"anyone?\n").ok();
    expect_eof(&mut stream, SOON).unwrap_or_else(|e| panic!("no healthy instance: {e}"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed only after {:?}",
        started.elapsed()
    );
}

#[test]
fn the_idle_timeout_closes_both_sides_and_traffic_keeps_the_tunnel_open() {
    let backend = TcpBackend::echo(IP1, "i-idle");
    let clb = Clb::tcp(
        &[backend.instance("zone-a")],
        &["--workers", "1", "--idle-timeout", "1"],
    );
    let mut stream = tcp_connect(clb.addr);
    // A byte every 300 ms for 2.4 s: twice the timeout, never idle for 1 s.
    let started = Instant::now();
    let mut sent = 0usize;
    let idle_since = loop {
        let byte = [b'a' + (sent % 26) as u8];
        stream
            .write_all(&byte)
            .unwrap_or_else(|e| panic!("write after {:?}: {e}", started.elapsed()));
        let back = read_exactly(&mut stream, 1)
            .unwrap_or_else(|e| panic!("echo after {:?}: {e}", started.elapsed()));
        assert_eq!(back, byte);
        sent += 1;
        let echoed = Instant::now();
        if started.elapsed() >= Duration::from_millis(2400) {
            break echoed;
        }
        // The pause between bytes: nothing may arrive, not even the end.
        if let Err(e) = expect_silence(&mut stream, Duration::from_millis(300)) {
            panic!(
                "after {:?} with a byte every 300 ms: {e}",
                started.elapsed()
            );
        }
    };
    // Then nothing: both connections close after about a second.
    expect_eof(&mut stream, SOON).unwrap_or_else(|e| panic!("idle client connection: {e}"));
    let after = idle_since.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "closed after only {after:?} of silence (--idle-timeout 1)"
    );
    assert!(
        after <= Duration::from_millis(3000),
        "closed after {after:?} of silence (--idle-timeout 1)"
    );
    let conn = finished_conn(&backend, b"a", SOON);
    assert!(
        conn.eof,
        "the instance's connection was reset instead of closed"
    );
    assert_eq!(
        conn.total,
        sent,
        "the instance got {:?}",
        preview(&conn.received)
    );
}

/// Reads for `during`: `Err` if anything arrives, EOF included.
fn expect_silence(stream: &mut TcpStream, during: Duration) -> Result<(), String> {
    use std::io::Read;
    stream.set_read_timeout(Some(during)).expect("timeout");
    let mut byte = [0u8; 1];
    let result = match stream.read(&mut byte) {
        Ok(0) => Err("the connection closed".to_string()),
        Ok(_) => Err(format!("unexpected byte {:?}", preview(&byte))),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("the connection failed: {e}")),
    };
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    result
}

// ---------------------------------------------------------------------------------
// PROXY protocol
// ---------------------------------------------------------------------------------

/// The v1 line, spec §8.4: `PROXY TCP4|TCP6 client clb client-port clb-port\r\n`.
fn v1_header(client: SocketAddr, lb: SocketAddr) -> Vec<u8> {
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        client.ip(),
        lb.ip(),
        client.port(),
        lb.port()
    )
    .into_bytes()
}

/// The v2 header: signature, version 2 / PROXY, family TCP4 (0x11) or TCP6 (0x21),
/// address length, source and destination addresses, then ports, big-endian.
fn v2_header(client: SocketAddr, lb: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21);
    match (client.ip(), lb.ip()) {
        (IpAddr::V4(c), IpAddr::V4(l)) => {
            h.push(0x11);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&c.octets());
            h.extend_from_slice(&l.octets());
        }
        (IpAddr::V6(c), IpAddr::V6(l)) => {
            h.push(0x21);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&c.octets());
            h.extend_from_slice(&l.octets());
        }
        other => panic!("mixed families {other:?}"),
    }
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&lb.port().to_be_bytes());
    h
}

/// Two instances behind one worker, the header on the first one's port only: the
/// connection that reaches it starts with exactly `header(client, clb)` and then the
/// client's bytes; the other gets the client's bytes first; probes get nothing.
fn proxy_protocol_case(
    flag_version: &str,
    bind: &str,
    header: fn(SocketAddr, SocketAddr) -> Vec<u8>,
) {
    let with = TcpBackend::echo(IP1, "i-proxied");
    let without = TcpBackend::echo(IP2, "i-plain");
    let flag = format!("{flag_version}{}", with.addr.port());
    // Health probes every 100 ms (a "second" of 20 ms), so several arrive meanwhile.
    let clb = Clb::listening(
        &|port| format!("tcp:{port}:tcp:80"),
        bind,
        &[with.instance("zone-a"), without.instance("zone-a")],
        &[
            "--workers",
            "1",
            "--proxy-protocol",
            &flag,
            "--health-interval",
            "5",
            "--health-timeout",
            "2",
        ],
        &[(HEALTH_TIME_UNIT_VAR, "20")],
        DEFAULT_TCP_HEALTH_CHECK,
    );
    assert_eq!(clb.addr.ip(), ip(bind));
    let mut proxied = 0;
    for i in 0..2 {
        let payload = format!("GET /pp-{i} HTTP/1.0\r\n\r\n").into_bytes();
        let (back, client, lb) = round_trip(clb.addr, &payload);
        assert_eq!(client.ip(), ip(bind), "the client's own address");
        let expected_header = header(client, lb);
        if let Some(conn) = with
            .conns()
            .into_iter()
            .find(|c| c.total > 0 && c.received.ends_with(&payload))
        {
            proxied += 1;
            let mut want = expected_header.clone();
            want.extend_from_slice(&payload);
            assert!(
                conn.received == want,
                "--proxy-protocol {flag}: the instance got {:?}, expected {:?}",
                preview(&conn.received),
                preview(&want)
            );
            // The echo carries the header back: what the client got is what was sent.
            assert_eq!(back, want, "echo: {:?}", preview(&back));
        } else {
            let conn = finished_conn(&without, &payload, SOON);
            assert_eq!(
                conn.received,
                payload,
                "an instance port without --proxy-protocol got {:?}",
                preview(&conn.received)
            );
            assert_eq!(back, payload);
        }
    }
    assert_eq!(
        proxied, 1,
        "one of the two connections goes to each instance"
    );
    // Health probes carry no header (nor anything else): wait for a few of them. The
    // only connection besides the test's own that may carry the header alone is the
    // one the harness opened and closed to see clb listening.
    assert!(
        wait_until(SOON, || with
            .conns()
            .iter()
            .filter(|c| c.total == 0)
            .count()
            >= 3),
        "fewer than 3 empty (probe) connections at the instance: {:?}",
        with.conns()
            .iter()
            .map(|c| preview(&c.received))
            .collect::<Vec<_>>()
    );
    let start = header_start(flag_version);
    let conns = with.conns();
    let bad: Vec<String> = conns
        .iter()
        .filter(|c| c.total > 0 && !c.received.starts_with(&start))
        .map(|c| preview(&c.received))
        .collect();
    assert!(bad.is_empty(), "connections without the header: {bad:?}");
    let header_only = conns
        .iter()
        .filter(|c| c.total > 0 && !c.received.ends_with(b" HTTP/1.0\r\n\r\n"))
        .count();
    assert!(
        header_only <= 1,
        "{header_only} connections carried a header and nothing else (probes with a header?): {:?}",
        conns
            .iter()
            .map(|c| preview(&c.received))
            .collect::<Vec<_>>()
    );
}

fn header_start(flag_version: &str) -> Vec<u8> {
    if flag_version == "v2:" {
        b"\r\n\r\n\0\r\nQUIT\n".to_vec()
    } else {
        b"PROXY ".to_vec()
    }
}

#[test]
fn proxy_protocol_v1_header_for_an_ipv4_client() {
    proxy_protocol_case("", "127.0.0.1", v1_header);
}

#[test]
fn proxy_protocol_v1_header_for_an_ipv6_client() {
    proxy_protocol_case("", "::1", v1_header);
}

#[test]
fn proxy_protocol_v2_header_for_an_ipv4_client() {
    proxy_protocol_case("v2:", "127.0.0.1", v2_header);
}

#[test]
fn proxy_protocol_v2_header_for_an_ipv6_client() {
    proxy_protocol_case("v2:", "::1", v2_header);
}

#[test]
fn the_v1_header_of_an_ipv4_client_is_the_documented_line() {
    // Spelled out once, independently of `v1_header`.
    let backend = TcpBackend::echo(IP1, "i-line");
    let flag = backend.addr.port().to_string();
    let clb = Clb::tcp(&[backend.instance("zone-a")], &["--proxy-protocol", &flag]);
    let mut stream = tcp_connect(clb.addr);
    let port = stream.local_addr().expect("local").port();
    stream.write_all(b"x").expect("write");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let back = read_to_eof(&mut stream, 4096, TRANSFER).expect("echo");
    let want = format!("PROXY TCP4 127.0.0.1 127.0.0.1 {port} {}\r\nx", clb.port());
    assert_eq!(String::from_utf8_lossy(&back), want);
    // (The harness's own connect to see clb listening carried a header too, alone.)
    assert!(
        wait_until(SOON, || backend
            .conns()
            .iter()
            .any(|c| c.received == want.as_bytes())),
        "the instance got {:?}",
        backend
            .conns()
            .iter()
            .map(|c| preview(&c.received))
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------

#[test]
fn a_hundred_concurrent_connections_each_echo_64_kib_byte_exact() {
    const CONNS: usize = 100;
    const LEN: usize = 64 * 1024;
    let backends = [
        TcpBackend::echo(IP1, "i-1"),
        TcpBackend::echo(IP2, "i-2"),
        TcpBackend::echo(IP3, "i-3"),
    ];
    let instances: Vec<Instance> = backends.iter().map(|b| b.instance("zone-a")).collect();
    let clb = Clb::tcp(&instances, &["--workers", "2"]);
    let addr = clb.addr;
    let failures: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = (0..CONNS)
            .map(|i| {
                s.spawn(move || -> Result<(), String> {
                    // Each connection its own bytes: a shifted pattern.
                    let offset = i * 1009;
                    let mut stream = TcpStream::connect_timeout(&addr, SOON)
                        .map_err(|e| format!("connect: {e}"))?;
                    stream
                        .set_read_timeout(Some(READ_TIMEOUT))
                        .map_err(|e| e.to_string())?;
                    stream
                        .set_write_timeout(Some(READ_TIMEOUT))
                        .map_err(|e| e.to_string())?;
                    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
                    let sender = thread::spawn(move || {
                        write_pattern(&mut writer, offset, LEN)
                            && writer.shutdown(Shutdown::Write).is_ok()
                    });
                    let back = read_to_eof(&mut stream, LEN + 1, TRANSFER);
                    let sent = sender.join().unwrap_or(false);
                    let back = back?;
                    if !sent {
                        return Err("writing failed".into());
                    }
                    let want = pattern_at(offset, LEN);
                    if back != want {
                        return Err(first_difference(&back, &want));
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .filter_map(|(i, h)| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("connection {i}: {e}")),
                Err(_) => Some(format!("connection {i}: thread panicked")),
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {CONNS} connections failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let counts: Vec<usize> = backends.iter().map(|b| b.data_conns().len()).collect();
    println!("connections per instance: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), CONNS, "{counts:?}");
    for (b, n) in backends.iter().zip(&counts) {
        assert!(
            *n >= 20,
            "{} got {n} of {CONNS} connections ({counts:?})",
            b.name()
        );
    }
    for b in &backends {
        for c in b.data_conns() {
            assert_eq!(
                c.total,
                LEN,
                "{}: a connection carried {} bytes",
                b.name(),
                c.total
            );
        }
    }
}
