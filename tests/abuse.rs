//! Holding up under abuse (issue 7): slow clients cut off by the header timeout however
//! they trickle, many slow heads held at a bounded memory cost while normal clients are
//! served, accepting paused (not busy-looping) when the process runs out of descriptors
//! and recovering by itself, and instances that misbehave mid-exchange.

mod common;

use common::slow::raise_fd_limit;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const SOON: Duration = Duration::from_secs(10);

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Reads until EOF (or the deadline) and returns what came.
fn read_all(conn: &mut TcpStream, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        conn.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

#[test]
fn a_trickled_head_gets_408_at_the_header_timeout_while_others_are_served() {
    let backend = Backend::echo("127.0.0.2", "i-1");
    let clb = Clb::http(
        &[backend.instance("zone-a")],
        &["--header-timeout", "1", "--idle-timeout", "30"],
    );
    let mut slow = TcpStream::connect(clb.addr).unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n")
        .unwrap();
    // A byte every 100 ms keeps the idle timeout fresh, never the header timeout.
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while started.elapsed() < SOON {
        if slow.write_all(b"X").is_err() {
            break;
        }
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        // Meanwhile a normal client is served at once.
        let mut normal = Client::connect(clb.addr);
        assert_eq!(normal.request(&get("/normal")).status, 200);
    }
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?} after {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "cut off after only {took:?}"
    );
    assert!(took < Duration::from_secs(5), "cut off only after {took:?}");
}

#[test]
fn thousands_of_slow_heads_cost_bounded_memory_and_do_not_stop_normal_clients() {
    raise_fd_limit();
    const SLOW: usize = 2_000;
    let backend = Backend::echo("127.0.0.2", "i-1");
    let clb = Clb::http(&[backend.instance("zone-a")], &["--workers", "1"]);
    let before = rss_kib(clb.pid());
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut conn = TcpStream::connect(clb.addr).unwrap();
        conn.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            .unwrap();
        slow.push(conn);
    }
    // Every slow connection is accepted and its bytes read before measuring.
    let mut normal = Client::connect(clb.addr);
    assert_eq!(normal.request(&get("/after-accepts")).status, 200);
    thread::sleep(Duration::from_millis(200));
    let after = rss_kib(clb.pid());
    let per_connection = (after.saturating_sub(before)) * 1024 / SLOW as u64;
    println!("{SLOW} slow heads: RSS {before} -> {after} KiB, {per_connection} B per connection");
    // README, "Holding up under abuse": a partial head holds one pooled 32 KiB buffer,
    // of which only the pages written are resident.
    assert!(
        per_connection <= 16 * 1024,
        "{per_connection} B per slow connection"
    );
    for i in 0..50 {
        assert_eq!(normal.request(&get(&format!("/n{i}"))).status, 200);
    }
    // A trickle on every slow connection: all still open, none answered yet.
    for conn in &mut slow {
        conn.write_all(b"y").unwrap();
    }
    assert_eq!(normal.request(&get("/last")).status, 200);
}

/// Starts clb under `ulimit -n LIMIT` (a shell wrapper), returning it and its log path.
fn clb_with_fd_limit(limit: u32, args: &[String]) -> (Child, std::path::PathBuf) {
    let log = std::env::temp_dir().join(format!("clb-abuse-{}-{limit}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(clb_binary())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    (child, log)
}

#[test]
fn out_of_descriptors_pauses_accepting_warns_once_a_second_and_recovers() {
    raise_fd_limit();
    let backend = Backend::echo("127.0.0.2", "i-1");
    let port = free_port("127.0.0.1");
    let args: Vec<String> = [
        "--listener".to_string(),
        format!("http:{port}:http:80"),
        "--bind".into(),
        "127.0.0.1".into(),
        "--api".into(),
        "off".into(),
        "--workers".into(),
        "1".into(),
        "--instance".into(),
        format!("i-1={}@zone-a", backend.addr),
        "--health-check".into(),
        format!("TCP:{}", backend.addr.port()),
    ]
    .into();
    // Room to start (threads, polls, listeners) even when the test process is busy, far
    // less than the connections below.
    let (mut child, log) = clb_with_fd_limit(256, &args);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_until(SOON, || TcpStream::connect(addr).is_ok()),
        "clb did not listen"
    );
    // Far more connections than descriptors: the kernel queues them; clb accepts what
    // it can and pauses instead of spinning.
    let mut held = Vec::new();
    for _ in 0..600 {
        if let Ok(conn) = TcpStream::connect(addr) {
            held.push(conn);
        }
    }
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(SOON, || log_text().contains("accept failed")),
        "no accept warning: {}",
        log_text()
    );
    // Warned at most about once a second while the table stays full.
    let start = Instant::now();
    thread::sleep(Duration::from_millis(2_500));
    let warnings = log_text().matches("accept failed").count();
    assert!(
        warnings <= 2 + start.elapsed().as_secs() as usize,
        "{warnings} warnings: {}",
        log_text()
    );
    // CPU: paused, not busy-looping on EMFILE.
    let cpu = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<u64> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|f| f.parse().ok())
            .collect();
        fields.iter().sum::<u64>()
    };
    let ticks_before = cpu(child.id());
    thread::sleep(Duration::from_secs(1));
    let ticks = cpu(child.id()) - ticks_before;
    assert!(
        ticks < 50,
        "{ticks} CPU ticks in 1 s while out of descriptors"
    );
    // Free the table: clb recovers by itself and serves a new client.
    for conn in held.drain(..) {
        let _ = conn.shutdown(Shutdown::Both);
    }
    let served = wait_until(SOON, || {
        let Ok(mut conn) = TcpStream::connect(addr) else {
            return false;
        };
        let _ = conn.write_all(get("/recovered").as_bytes());
        let got = read_all(&mut conn, Duration::from_secs(1));
        got.starts_with(b"HTTP/1.1 200")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(served, "clb did not recover: {}", log_text());
    let _ = std::fs::remove_file(&log);
}

/// An instance port whose connections get `script` run on them (after the health
/// probe's bare connects, which carry no bytes).
fn scripted_instance(script: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || script(conn));
        }
    });
    addr
}

/// Reads one request head (up to the blank line); false on EOF (a health probe).
fn read_head(conn: &mut TcpStream) -> bool {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => return false,
        }
    }
    true
}

fn reset(conn: TcpStream) {
    let sock = socket2::SockRef::from(&conn);
    let _ = sock.set_linger(Some(Duration::ZERO));
    drop(conn);
}

fn clb_for(instance: SocketAddr) -> Clb {
    let spec = format!("i-1={instance}@zone-a");
    let check = format!("TCP:{}", instance.port());
    let port = free_port("127.0.0.1");
    let listener = format!("http:{port}:http:80");
    Clb::start(&[
        "--listener",
        &listener,
        "--bind",
        "127.0.0.1",
        "--api",
        "off",
        "--instance",
        &spec,
        "--health-check",
        &check,
        "--idle-timeout",
        "2",
    ])
}

/// The same request twice on fresh connections: the answer comes, and clb still serves.
fn status_twice(clb: &Clb, request: &[u8]) -> Vec<u16> {
    let in_service = wait_until(SOON, || clb.log_text().contains("-> InService"));
    assert!(in_service, "{}", clb.log_text());
    (0..2)
        .map(|_| {
            let mut conn = TcpStream::connect(clb.addr).unwrap();
            conn.write_all(request).unwrap();
            let got = read_all(&mut conn, SOON);
            let text = String::from_utf8_lossy(&got);
            text.split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        })
        .collect()
}

#[test]
fn an_instance_resetting_mid_head_gets_502() {
    let instance = scripted_instance(|mut conn| {
        if read_head(&mut conn) {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Le");
            thread::sleep(Duration::from_millis(50));
            reset(conn);
        }
    });
    let clb = clb_for(instance);
    assert_eq!(status_twice(&clb, get("/x").as_bytes()), [502, 502]);
}

#[test]
fn an_instance_answering_before_the_upload_ends_is_passed_on() {
    let instance = scripted_instance(|mut conn| {
        if read_head(&mut conn) {
            let _ = conn.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope");
            let _ = conn.shutdown(Shutdown::Write);
            // Then reads and drops whatever comes, as real servers do while closing.
            let _ = std::io::copy(&mut conn, &mut std::io::sink());
        }
    });
    let clb = clb_for(instance);
    let in_service = wait_until(SOON, || clb.log_text().contains("-> InService"));
    assert!(in_service);
    let mut conn = TcpStream::connect(clb.addr).unwrap();
    conn.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n")
        .unwrap();
    let _ = conn.write_all(&[b'u'; 64 * 1024]);
    let got = read_all(&mut conn, SOON);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");
    assert!(text.ends_with("nope"), "{text:?}");
    assert_eq!(status_twice(&clb, get("/next").as_bytes())[0], 413);
}

#[test]
fn an_instance_that_never_reads_an_upload_is_cut_off_at_the_idle_timeout() {
    let instance = scripted_instance(|conn| {
        // Holds the connection, reads nothing.
        thread::sleep(Duration::from_secs(30));
        drop(conn);
    });
    let clb = clb_for(instance);
    let in_service = wait_until(SOON, || clb.log_text().contains("-> InService"));
    assert!(in_service);
    let mut conn = TcpStream::connect(clb.addr).unwrap();
    conn.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 67108864\r\n\r\n")
        .unwrap();
    conn.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    // Write until the buffers along the way are full and clb stops reading.
    let chunk = vec![b'u'; 64 * 1024];
    while started.elapsed() < SOON && conn.write_all(&chunk).is_ok() {}
    let got = read_all(&mut conn, SOON);
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&got);
    // clb answers (504: the instance stopped taking bytes) or closes; never hangs.
    assert!(
        got.is_empty() || text.starts_with("HTTP/1.1 504") || text.starts_with("HTTP/1.1 408"),
        "{text:?}"
    );
    assert!(took < Duration::from_secs(9), "took {took:?}");
}
