//! TLS to instances (issue 6 item 4; spec §13.15–13.16): HTTP and HTTPS listeners in
//! front of HTTPS instances, SSL listeners in front of SSL instances, HTTPS and SSL
//! health checks, pooled TLS connections, no SNI towards instances, the PROXY protocol
//! header inside the TLS session, and the two ways to trust an instance's certificate
//! (`--backend-public-key` pins, `--backend-ca`).
//!
//! The instances are [`TlsBackend`]s: rustls servers (thread per connection) that count
//! handshakes, record the SNI name they were sent, and either answer HTTP requests with
//! a body describing what they received or echo every byte.

mod common;

use common::tls::*;
use common::*;
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const MIB: usize = 1 << 20;
const SOON: Duration = Duration::from_secs(10);
/// A "second" of health-check time, in milliseconds.
const HEALTH_UNIT_MS: &str = "100";

/// What a [`TlsBackend`] does once a handshake is done.
#[derive(Clone, Copy)]
enum Mode {
    /// Answers each request with `proto=<X-Forwarded-Proto> path=<path> body=<bytes>`,
    /// or with `size` pattern bytes for `GET /big/<size>`.
    Http,
    /// Writes back every byte it reads; at the client's close_notify, sends its own.
    Echo,
}

#[derive(Default)]
struct Seen {
    handshakes: AtomicUsize,
    requests: AtomicUsize,
    /// SNI names instances were sent (`None` when there was none).
    sni: Mutex<Vec<Option<String>>>,
    /// The bytes each [`Mode::Echo`] session carried, as each ends.
    echoed: Mutex<Vec<usize>>,
}

/// A TLS test instance: a rustls server on `IP:free port`, a thread per connection.
struct TlsBackend {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl TlsBackend {
    fn start(ip_str: &str, leaf: &Leaf, mode: Mode) -> TlsBackend {
        let listener = bind_unique(ip_str);
        let addr = listener.local_addr().expect("instance addr");
        let seen = Arc::new(Seen::default());
        let config = leaf.server_config();
        let shared = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (config, seen) = (config.clone(), shared.clone());
                thread::spawn(move || serve(stream, config, &seen, mode));
            }
        });
        TlsBackend { addr, seen }
    }

    fn instance(&self, id: &str) -> Instance {
        Instance::new(id, self.addr, "zone-a").expecting_healthy(true)
    }

    fn handshakes(&self) -> usize {
        self.seen.handshakes.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// No handshake so far carried an SNI name.
    fn saw_no_sni(&self) -> bool {
        let sni = self.seen.sni.lock().expect("sni lock");
        sni.iter().all(Option::is_none)
    }
}

fn serve(stream: TcpStream, config: Arc<ServerConfig>, seen: &Seen, mode: Mode) {
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, stream);
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            return;
        }
    }
    seen.handshakes.fetch_add(1, Ordering::SeqCst);
    seen.sni
        .lock()
        .expect("sni lock")
        .push(tls.conn.server_name().map(str::to_string));
    match mode {
        Mode::Echo => {
            let mut buf = [0u8; 16 * 1024];
            let mut echoed = 0;
            loop {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tls.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        echoed += n;
                    }
                }
            }
            // The client half-closed: say so the TLS way and end.
            tls.conn.send_close_notify();
            let _ = tls.flush();
            seen.echoed.lock().expect("echoed lock").push(echoed);
        }
        Mode::Http => {
            let mut reader = BufReader::new(tls);
            while let Some((path, proto, body)) = read_request(&mut reader) {
                if path.starts_with("/health") {
                    let _ = reader
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    continue;
                }
                seen.requests.fetch_add(1, Ordering::SeqCst);
                let answer = match path.strip_prefix("/big/") {
                    Some(size) => pattern(size.parse().unwrap_or(0)),
                    None => format!("proto={proto} path={path} body={}", body.len()).into_bytes(),
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    answer.len()
                );
                let out = reader.get_mut();
                if out.write_all(head.as_bytes()).is_err() || out.write_all(&answer).is_err() {
                    return;
                }
            }
        }
    }
}

/// One request: path, X-Forwarded-Proto and the Content-Length body.
fn read_request(reader: &mut impl BufRead) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = line.split(' ').nth(1)?.to_string();
    let (mut proto, mut length) = (String::new(), 0usize);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "x-forwarded-proto" => proto = value.trim().to_string(),
            "content-length" => length = value.trim().parse().ok()?,
            _ => {}
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, proto, body))
}

/// clb with the listener `FRONT:PORT:BACK` (e.g. `http` and `https:443`) on a free port
/// of 127.0.0.1 in front of `instances`, one worker and a short health-check "second",
/// then `extra` (which names the health check).
fn start_clb(front: &str, back: &str, instances: &[Instance], extra: &[&str]) -> Clb {
    let mut args = vec!["--workers", "1"];
    args.extend_from_slice(extra);
    Clb::listening(
        &|port| format!("{front}:{port}:{back}"),
        "127.0.0.1",
        instances,
        &args,
        &[(HEALTH_TIME_UNIT_VAR, HEALTH_UNIT_MS)],
        "TCP:443",
    )
}

/// The body of a [`Mode::Http`] instance's answer to `path` with `body` bytes.
fn answer(proto: &str, path: &str, body: usize) -> String {
    format!("proto={proto} path={path} body={body}")
}

/// One request on a new connection to clb; the status of its response.
fn status_of_get(clb: &Clb, path: &str) -> u16 {
    clb.connect().request(&get(path)).status
}

#[test]
fn http_listener_to_https_instances_with_pooled_sessions() {
    let leaf = Leaf::self_signed(&["backend"]);
    let a = TlsBackend::start(IP1, &leaf, Mode::Http);
    let b = TlsBackend::start(IP2, &leaf, Mode::Http);
    let clb = start_clb(
        "http",
        "https:443",
        &[a.instance("a"), b.instance("b")],
        &["--health-check", "HTTPS:443/health"],
    );
    let mut client = clb.connect();
    for i in 0..20 {
        let path = format!("/r{i}");
        let r = client.request(&get(&path));
        assert_eq!(r.status, 200, "{}", r.body_text());
        assert_eq!(r.body_text(), answer("http", &path, 0));
    }
    assert_eq!(a.requests() + b.requests(), 20);
    client.send(&with_body("POST", "/upload", &pattern(MIB)));
    let r = client.response();
    assert_eq!(
        (r.status, r.body_text()),
        (200, answer("http", "/upload", MIB))
    );
    let r = client.request(&get(&format!("/big/{MIB}")));
    assert_eq!(r.status, 200);
    assert!(r.body == pattern(MIB), "1 MiB body differs");
    // No SNI goes to instances (spec §13.15).
    assert!(a.saw_no_sni() && b.saw_no_sni());
}

#[test]
fn sessions_to_instances_are_reused_across_clients() {
    let leaf = Leaf::self_signed(&["backend"]);
    let a = TlsBackend::start(IP1, &leaf, Mode::Http);
    // A TCP check, so no probe handshake is counted.
    let clb = start_clb(
        "http",
        "https:443",
        &[a.instance("a")],
        &["--health-check", "TCP:443"],
    );
    for i in 0..10 {
        assert_eq!(status_of_get(&clb, &format!("/c{i}")), 200);
    }
    assert_eq!(a.requests(), 10);
    assert_eq!(
        a.handshakes(),
        1,
        "one pooled TLS session serves every client"
    );
}

/// A TLS 1.2 and 1.3 client that takes clb's own self-signed listener certificate.
fn any_cert() -> Arc<rustls::ClientConfig> {
    accept_any_client(&[&rustls::version::TLS13, &rustls::version::TLS12])
}

#[test]
fn https_listener_to_https_instance() {
    let leaf = Leaf::self_signed(&["backend"]);
    let a = TlsBackend::start(IP1, &leaf, Mode::Http);
    let clb = start_clb(
        "https",
        "https:443",
        &[a.instance("a")],
        &["--health-check", "SSL:443"],
    );
    let mut client = TlsClient::open(clb.addr, &any_cert(), "localhost");
    let r = client.request(&get("/end-to-end"));
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.body_text(), answer("https", "/end-to-end", 0));
}

#[test]
fn ssl_listener_to_ssl_instance_with_proxy_protocol_inside_the_session() {
    let leaf = Leaf::self_signed(&["backend"]);
    let a = TlsBackend::start(IP1, &leaf, Mode::Echo);
    let clb = start_clb(
        "ssl",
        "ssl:443",
        &[a.instance("a")],
        &[
            "--health-check",
            "TCP:443",
            "--proxy-protocol",
            &a.addr.port().to_string(),
        ],
    );
    let mut client = TlsClient::open(clb.addr, &any_cert(), "localhost");
    let local = client.stream.sock.local_addr().expect("local addr");
    let header = format!(
        "PROXY TCP4 {} {} {} {}\r\n",
        local.ip(),
        clb.addr.ip(),
        local.port(),
        clb.addr.port()
    );
    // rustls streams do not split into halves: send 1 MiB in 16 KiB steps, reading
    // each step's echo back before the next, so no buffer anywhere fills.
    let payload = pattern(MIB);
    for (i, chunk) in payload.chunks(16 * 1024).enumerate() {
        client.send(chunk);
        if i == 0 {
            let got = client
                .read_exactly(header.len())
                .unwrap_or_else(|e| panic!("the PROXY header: {e}"));
            assert_eq!(
                String::from_utf8_lossy(&got),
                header,
                "the PROXY header comes first, inside TLS"
            );
        }
        let echo = client
            .read_exactly(chunk.len())
            .unwrap_or_else(|e| panic!("echo of step {i}: {e}"));
        assert!(echo == chunk, "echo of step {i} differs");
    }
    // Half-close: close_notify from the client comes back as the instance's own.
    client.half_close();
    match client.expect_end(SOON) {
        Ok(true) => {}
        Ok(false) => panic!("the instance's close_notify came as a bare TCP close"),
        Err(e) => panic!("after the client's close_notify: {e}"),
    }
    // One session carried it all. (The harness's own "is it listening" connect may
    // have opened a tunnel, and a session, of its own: it carries no more than the
    // PROXY header.)
    let mut sessions = Vec::new();
    let ended = wait_until(SOON, || {
        sessions = a.seen.echoed.lock().expect("echoed lock").clone();
        sessions.contains(&(header.len() + MIB))
    });
    assert!(
        ended,
        "no session carried the header and 1 MiB: {sessions:?}"
    );
    assert!(
        sessions.iter().filter(|n| **n > header.len()).count() == 1,
        "bytes per session: {sessions:?}"
    );
    assert!(a.saw_no_sni());
}

#[test]
fn https_health_checks_fail_on_a_plain_instance_and_pass_on_a_tls_one() {
    let leaf = Leaf::self_signed(&["backend"]);
    let tls = TlsBackend::start(IP1, &leaf, Mode::Http);
    let plain = Backend::echo(IP2, "plain");
    let clb = start_clb(
        "http",
        "https:443",
        &[
            tls.instance("tls"),
            plain.instance("zone-a").expecting_healthy(false),
        ],
        &["--health-check", "HTTPS:443/health"],
    );
    // The plain instance answers probes in cleartext: it never comes in service, so
    // every request goes to the TLS one.
    for i in 0..6 {
        assert_eq!(status_of_get(&clb, &format!("/h{i}")), 200);
    }
    assert_eq!(tls.requests(), 6);
    assert!(clb
        .log_lines_with("plain")
        .iter()
        .all(|l| !l.contains("-> InService")));
}

/// Two self-signed certificates, "trusted" and "other", and a `--backend-public-key`
/// file in `files` that pins the trusted one's key (a certificate file: its key is
/// taken).
fn pinned(files: &TempDir) -> (Leaf, Leaf, String) {
    let trusted = Leaf::self_signed(&["trusted"]);
    let pin = files.write("pin.pem", trusted.cert_pem.as_bytes());
    (trusted, Leaf::self_signed(&["other"]), pin)
}

#[test]
fn pinned_public_keys_decide_which_instances_are_trusted() {
    let files = TempDir::new("pins");
    let (trusted, other, pin) = pinned(&files);
    let a = TlsBackend::start(IP1, &trusted, Mode::Http);
    let b = TlsBackend::start(IP2, &other, Mode::Http);
    // An SSL check fails where the key does not match.
    let clb = start_clb(
        "http",
        "https:443",
        &[a.instance("a"), b.instance("b").expecting_healthy(false)],
        &["--health-check", "SSL:443", "--backend-public-key", &pin],
    );
    for i in 0..6 {
        assert_eq!(status_of_get(&clb, &format!("/p{i}")), 200);
    }
    assert_eq!((a.requests(), b.requests()), (6, 0));
    assert_eq!(
        b.handshakes(),
        0,
        "the untrusted instance never completes a handshake"
    );
}

#[test]
fn an_unpinned_instance_in_service_by_tcp_check_is_never_sent_a_request() {
    let files = TempDir::new("pins");
    let (_, other, pin) = pinned(&files);
    let b = TlsBackend::start(IP2, &other, Mode::Http);
    let clb = start_clb(
        "http",
        "https:443",
        &[b.instance("b")],
        &["--health-check", "TCP:443", "--backend-public-key", &pin],
    );
    let status = status_of_get(&clb, "/x");
    assert!(status >= 500, "status {status}");
    assert_eq!(b.requests(), 0);
}

#[test]
fn a_backend_ca_trusts_the_leaves_it_signed_and_listed_certificates() {
    let files = TempDir::new("backend-ca");
    let ca = TestCa::new();
    let signed = ca.leaf(&["signed.example"]);
    let stranger = TestCa::new().leaf(&["stranger.example"]);
    let listed = Leaf::self_signed(&["listed"]);
    let a = TlsBackend::start(IP1, &signed, Mode::Http);
    let b = TlsBackend::start(IP2, &stranger, Mode::Http);
    let c = TlsBackend::start(IP3, &listed, Mode::Http);
    let bundle = files.write(
        "ca.pem",
        format!("{}{}", ca.pem, listed.cert_pem).as_bytes(),
    );
    let clb = start_clb(
        "http",
        "https:443",
        &[
            a.instance("a"),
            b.instance("b").expecting_healthy(false),
            c.instance("c"),
        ],
        &["--health-check", "SSL:443", "--backend-ca", &bundle],
    );
    for i in 0..8 {
        assert_eq!(status_of_get(&clb, &format!("/ca{i}")), 200);
    }
    assert_eq!(a.requests() + c.requests(), 8);
    assert!(a.requests() > 0 && c.requests() > 0);
    assert_eq!(b.requests(), 0);
}

#[test]
fn unreadable_trust_files_stop_clb_at_start() {
    let run = run_clb(&[
        "--listener",
        "http:1:https:443",
        "--instance",
        "a=127.0.0.2",
        "--api",
        "off",
        "--backend-ca",
        "/nonexistent/ca.pem",
    ]);
    assert_ne!(run.status.code(), Some(0));
    assert!(run.stderr.contains("/nonexistent/ca.pem"), "{}", run.stderr);
}
