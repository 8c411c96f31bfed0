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

use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const SOON: Duration = Duration::from_secs(10);
const MIB: usize = 1 << 20;

/// A certificate and its key, as PEM files on disk and as rustls values.
struct Identity {
    cert_pem: String,
    cert: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Identity {
    fn self_signed(name: &str) -> Identity {
        let generated = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        Identity {
            cert_pem: generated.cert.pem(),
            cert: generated.cert.der().clone(),
            key_der: generated.signing_key.serialize_der(),
        }
    }

    fn server_config(&self) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![self.cert.clone()], key)
                .unwrap();
        Arc::new(config)
    }
}

/// A CA, and leaf identities it signs.
struct Authority {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Authority {
    fn new() -> Authority {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "clb test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        Authority {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(&self, name: &str) -> Identity {
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

/// Files that disappear with the test.
struct TempFiles(Vec<PathBuf>);

impl TempFiles {
    fn write(&mut self, name: &str, content: &str) -> String {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "clb-tls-backend-{}-{}-{name}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, content).unwrap();
        self.0.push(path.clone());
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[derive(Clone, Copy)]
enum Mode {
    /// Answers each request with `proto=<X-Forwarded-Proto> path=<path> body=<bytes>`,
    /// or with `size` pattern bytes for `GET /big/<size>`.
    Http,
    Echo,
}

#[derive(Default)]
struct Seen {
    handshakes: AtomicUsize,
    requests: AtomicUsize,
    /// SNI names instances were sent (`None` when there was none).
    sni: Mutex<Vec<Option<String>>>,
}

struct TlsBackend {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl TlsBackend {
    fn start(ip_str: &str, identity: &Identity, mode: Mode) -> TlsBackend {
        let listener = TcpListener::bind((ip(ip_str), 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let config = identity.server_config();
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
        .unwrap()
        .push(tls.conn.server_name().map(str::to_string));
    match mode {
        Mode::Echo => {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tls.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            // The client half-closed: say so the TLS way and end.
            tls.conn.send_close_notify();
            let _ = tls.flush();
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

/// Starts clb with `listener` in front of `instances` and waits for those expected healthy.
fn start_clb(listener_proto: &str, instances: &[Instance], extra: &[&str]) -> Clb {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port("127.0.0.1");
        let listener = format!("{listener_proto}:{port}:{}", extra_instance_proto(extra));
        let specs: Vec<String> = instances.iter().map(Instance::spec).collect();
        let mut args = vec![
            "--listener",
            &listener,
            "--bind",
            "127.0.0.1",
            "--api",
            "off",
            "--workers",
            "1",
        ];
        for spec in &specs {
            args.extend_from_slice(&["--instance", spec]);
        }
        args.extend(extra.iter().filter(|a| !a.starts_with("instance-proto=")));
        match Clb::try_start_env(&args, &[(HEALTH_TIME_UNIT_VAR, "100")]) {
            Ok(mut clb) => {
                let expected: Vec<&Instance> =
                    instances.iter().filter(|i| i.expect_healthy).collect();
                if let Err(e) = clb.wait_in_service(&expected, SOON) {
                    panic!("{e}");
                }
                return clb;
            }
            Err(e) => last = e,
        }
    }
    panic!("clb did not start: {last}");
}

/// `instance-proto=https:443` in `extra` names the listener's instance side.
fn extra_instance_proto(extra: &[&str]) -> String {
    extra
        .iter()
        .find_map(|a| a.strip_prefix("instance-proto="))
        .unwrap_or("https:443")
        .to_string()
}

/// Sends one request on `conn` and returns status and body.
fn request(conn: &mut TcpStream, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: clb\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    read_response(conn)
}

fn read_response(conn: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    (status, body)
}

fn connect(clb: &Clb) -> TcpStream {
    let conn = TcpStream::connect(clb.addr).unwrap();
    conn.set_read_timeout(Some(SOON)).unwrap();
    conn
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[test]
fn http_listener_to_https_instances_with_pooled_sessions() {
    let id = Identity::self_signed("backend");
    let a = TlsBackend::start("127.0.0.2", &id, Mode::Http);
    let b = TlsBackend::start("127.0.0.3", &id, Mode::Http);
    let clb = start_clb(
        "http",
        &[a.instance("a"), b.instance("b")],
        &["--health-check", "HTTPS:443/health"],
    );
    let mut conn = connect(&clb);
    for i in 0..20 {
        let (status, body) = request(&mut conn, "GET", &format!("/r{i}"), b"");
        assert_eq!(status, 200, "{}", text(&body));
        assert_eq!(text(&body), format!("proto=http path=/r{i} body=0"));
    }
    assert_eq!(a.requests() + b.requests(), 20);
    let (status, body) = request(&mut conn, "POST", "/upload", &pattern(MIB));
    assert_eq!(
        (status, text(&body)),
        (200, format!("proto=http path=/upload body={MIB}"))
    );
    let (status, body) = request(&mut conn, "GET", &format!("/big/{MIB}"), b"");
    assert_eq!(status, 200);
    assert!(body == pattern(MIB), "1 MiB body differs");
    // No SNI goes to instances (spec §13.15).
    for seen in [&a.seen, &b.seen] {
        assert!(seen.sni.lock().unwrap().iter().all(Option::is_none));
    }
}

#[test]
fn sessions_to_instances_are_reused_across_clients() {
    let id = Identity::self_signed("backend");
    let a = TlsBackend::start("127.0.0.2", &id, Mode::Http);
    // A TCP check, so no probe handshake is counted.
    let clb = start_clb("http", &[a.instance("a")], &["--health-check", "TCP:443"]);
    for i in 0..10 {
        let mut conn = connect(&clb);
        let (status, _) = request(&mut conn, "GET", &format!("/c{i}"), b"");
        assert_eq!(status, 200);
    }
    assert_eq!(a.requests(), 10);
    assert_eq!(
        a.handshakes(),
        1,
        "one pooled TLS session serves every client"
    );
}

#[test]
fn https_listener_to_https_instance() {
    let id = Identity::self_signed("backend");
    let a = TlsBackend::start("127.0.0.2", &id, Mode::Http);
    let clb = start_clb("https", &[a.instance("a")], &["--health-check", "SSL:443"]);
    let mut client = tls_client(&clb);
    client
        .write_all(b"GET /end-to-end HTTP/1.1\r\nHost: clb\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !text(&got).contains("body=0") {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", text(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        text(&got).ends_with("proto=https path=/end-to-end body=0"),
        "{}",
        text(&got)
    );
}

/// A TLS client to clb's own (self-signed) listener certificate.
fn tls_client(clb: &Clb) -> StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAnything))
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    StreamOwned::new(conn, connect(clb))
}

#[derive(Debug)]
struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[test]
fn ssl_listener_to_ssl_instance_with_proxy_protocol_inside_the_session() {
    let id = Identity::self_signed("backend");
    let a = TlsBackend::start("127.0.0.2", &id, Mode::Echo);
    let clb = start_clb(
        "ssl",
        &[a.instance("a")],
        &[
            "instance-proto=ssl:443",
            "--health-check",
            "TCP:443",
            "--proxy-protocol",
            &a.addr.port().to_string(),
        ],
    );
    let mut client = tls_client(&clb);
    let local = client.sock.local_addr().unwrap();
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
    let mut got = vec![0u8; header.len()];
    for (i, chunk) in payload.chunks(16 * 1024).enumerate() {
        client.write_all(chunk).unwrap();
        client.flush().unwrap();
        let mut echo = vec![0u8; chunk.len()];
        if i == 0 {
            client.read_exact(&mut got).unwrap();
            assert_eq!(
                text(&got),
                header,
                "the PROXY header comes first, inside TLS"
            );
        }
        client.read_exact(&mut echo).unwrap();
        assert!(echo == chunk, "echo of step {i} differs");
    }
    // Half-close: close_notify from the client comes back as the instance's own.
    client.conn.send_close_notify();
    client.flush().unwrap();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{} stray bytes", rest.len());
    // Not exactly 1: the harness's own "is it listening" connect may start a tunnel too.
    assert!(a.handshakes() >= 1);
    assert!(a.seen.sni.lock().unwrap().iter().all(Option::is_none));
}

#[test]
fn https_health_checks_fail_on_a_plain_instance_and_pass_on_a_tls_one() {
    let id = Identity::self_signed("backend");
    let tls = TlsBackend::start("127.0.0.2", &id, Mode::Http);
    let plain = Backend::echo("127.0.0.3", "plain");
    let clb = start_clb(
        "http",
        &[
            tls.instance("tls"),
            plain.instance("zone-a").expecting_healthy(false),
        ],
        &["--health-check", "HTTPS:443/health"],
    );
    // The plain instance answers probes in cleartext: it never comes in service, so
    // every request goes to the TLS one.
    for i in 0..6 {
        let mut conn = connect(&clb);
        assert_eq!(request(&mut conn, "GET", &format!("/h{i}"), b"").0, 200);
    }
    assert_eq!(tls.requests(), 6);
    assert!(clb
        .log_lines_with("plain")
        .iter()
        .all(|l| !l.contains("-> InService")));
}

#[test]
fn pinned_public_keys_decide_which_instances_are_trusted() {
    let mut files = TempFiles(Vec::new());
    let trusted = Identity::self_signed("trusted");
    let other = Identity::self_signed("other");
    let a = TlsBackend::start("127.0.0.2", &trusted, Mode::Http);
    let b = TlsBackend::start("127.0.0.3", &other, Mode::Http);
    // A certificate file pins its key; an SSL check fails where the key does not match.
    let pin = files.write("pin.pem", &trusted.cert_pem);
    let clb = start_clb(
        "http",
        &[a.instance("a"), b.instance("b").expecting_healthy(false)],
        &["--health-check", "SSL:443", "--backend-public-key", &pin],
    );
    for i in 0..6 {
        let mut conn = connect(&clb);
        assert_eq!(request(&mut conn, "GET", &format!("/p{i}"), b"").0, 200);
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
    let mut files = TempFiles(Vec::new());
    let trusted = Identity::self_signed("trusted");
    let other = Identity::self_signed("other");
    let b = TlsBackend::start("127.0.0.3", &other, Mode::Http);
    let pin = files.write("pin.pem", &trusted.cert_pem);
    let clb = start_clb(
        "http",
        &[b.instance("b")],
        &["--health-check", "TCP:443", "--backend-public-key", &pin],
    );
    let mut conn = connect(&clb);
    let (status, _) = request(&mut conn, "GET", "/x", b"");
    assert!(status >= 500, "status {status}");
    assert_eq!(b.requests(), 0);
}

#[test]
fn a_backend_ca_trusts_the_leaves_it_signed_and_listed_certificates() {
    let mut files = TempFiles(Vec::new());
    let ca = Authority::new();
    let signed = ca.leaf("signed.example");
    let stranger = Authority::new().leaf("stranger.example");
    let listed = Identity::self_signed("listed");
    let a = TlsBackend::start("127.0.0.2", &signed, Mode::Http);
    let b = TlsBackend::start("127.0.0.3", &stranger, Mode::Http);
    let c = TlsBackend::start("127.0.0.4", &listed, Mode::Http);
    let bundle = files.write("ca.pem", &format!("{}{}", ca.pem(), listed.cert_pem));
    let clb = start_clb(
        "http",
        &[
            a.instance("a"),
            b.instance("b").expecting_healthy(false),
            c.instance("c"),
        ],
        &["--health-check", "SSL:443", "--backend-ca", &bundle],
    );
    for i in 0..8 {
        let mut conn = connect(&clb);
        assert_eq!(request(&mut conn, "GET", &format!("/ca{i}"), b"").0, 200);
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
