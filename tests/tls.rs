//! HTTPS and SSL listeners (spec §13): TLS terminated by clb in front of plain HTTP and
//! TCP instances.
//!
//! Covered: an HTTPS request reaching the instance as HTTP with `X-Forwarded-Proto:
//! https` and the listener's port; keep-alive, pipelining and 1 MiB bodies both ways on
//! one TLS session; certificate choice by SNI (the first pair for an unknown name or no
//! SNI at all); the self-signed default when no `--cert` is given; SSL listeners
//! forwarding bytes untouched with half-close passed on both ways, and an instance that
//! speaks first (before and during the client's handshake); TLS 1.2 and 1.3 clients and
//! the policy's server-ordered AEAD suites; a plaintext client getting an alert and a
//! close while clb keeps serving; a handshake that never finishes closed at the idle
//! timeout; clb's own 503 inside TLS; policies rustls cannot honour refused at start;
//! SIGHUP reloading the certificate files (a bad file keeps the old ones); and 50
//! concurrent TLS clients.
//!
//! Certificates are made per test with rcgen (a test CA and its leaves, or one leaf),
//! written under the temp directory and removed when the test ends. The client is
//! rustls over a blocking socket with [`READ_TIMEOUT`] on every read, so a broken
//! listener fails a test instead of hanging it; certificates are checked either by a
//! verifier that trusts the test CA, or by [`AcceptAnyCert`] (for the self-signed
//! default and names no certificate is valid for), and what the server presented is read
//! back from the session.

mod common;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::version::{TLS12, TLS13};
use rustls::{
    CipherSuite, ClientConfig, ClientConnection, DigitallySignedStruct, ProtocolVersion,
    RootCertStore, SignatureScheme, StreamOwned, SupportedProtocolVersion,
};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
/// How long something that should be immediate may take.
const SOON: Duration = Duration::from_secs(5);
/// How long a whole 1 MiB transfer may take.
const TRANSFER: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------
// Certificates and their files
// ---------------------------------------------------------------------------------

static DIR_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A directory of its own under the temp directory, removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "clb-tls-test-{}-{}-{tag}",
            std::process::id(),
            DIR_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {path:?}: {e}"));
        TempDir(path)
    }

    /// Writes (or overwrites) `name` in the directory; returns its path.
    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A test certificate authority that signs leaves.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

/// A leaf certificate: what clb is given (`--cert` chain and `--key`) and what a client
/// should see.
struct Leaf {
    /// The leaf alone, as the server presents it first.
    der: CertificateDer<'static>,
    /// Leaf then CA, PEM: a chain, as `--cert` takes it.
    chain_pem: String,
    key_pem: String,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "clb test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (its common name is the first), with its own new key.
    fn leaf(&self, names: &[&str], serial: u64) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        params.serial_number = Some(SerialNumber::from(serial));
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            der: cert.der().clone(),
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client that trusts only this CA, offering `versions`, without session resumption
    /// (every connection makes a full handshake, so it sees the server's current
    /// certificate).
    fn client(&self, versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).expect("CA as a root");
        client_trusting(roots, versions)
    }
}

/// Writes `leaf` as `STEM.pem` (the chain) and `STEM.key`; returns both paths.
fn write_pair(dir: &TempDir, stem: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
    (
        dir.write(&format!("{stem}.pem"), leaf.chain_pem.as_bytes()),
        dir.write(&format!("{stem}.key"), leaf.key_pem.as_bytes()),
    )
}

/// One CA, one leaf per name list, their files, and the `--cert`/`--key` flags naming
/// them in order (the first is clb's default).
struct Certs {
    _dir: TempDir,
    ca: TestCa,
    leaves: Vec<Leaf>,
    flags: Vec<String>,
}

impl Certs {
    fn new(names: &[&[&str]]) -> Certs {
        let dir = TempDir::new("certs");
        let ca = TestCa::new();
        let mut leaves = Vec::new();
        let mut flags = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let leaf = ca.leaf(n, i as u64 + 1);
            let (cert, key) = write_pair(&dir, &format!("leaf{i}"), &leaf);
            flags.extend([
                "--cert".to_string(),
                path_str(&cert),
                "--key".to_string(),
                path_str(&key),
            ]);
            leaves.push(leaf);
        }
        Certs {
            _dir: dir,
            ca,
            leaves,
            flags,
        }
    }

    /// The certificate flags followed by `extra`.
    fn with<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        args
    }

    /// A TLS 1.2 and 1.3 client that trusts the CA.
    fn client(&self) -> Arc<ClientConfig> {
        self.ca.client(&[&TLS13, &TLS12])
    }
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("temp paths are UTF-8").to_string()
}

// ---------------------------------------------------------------------------------
// TLS clients
// ---------------------------------------------------------------------------------

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn client_trusting(
    roots: RootCertStore,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// A client that takes any certificate for any name (the self-signed default, or a name
/// no certificate is valid for), while still checking that the server holds the key of
/// the certificate it presented. The certificate is read back from the session.
fn accept_any_client(versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// Trusts every certificate chain for every name; handshake signatures are still
/// verified, so the server must hold the presented certificate's key.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A blocking TLS client connection with a handshake done, and a raw HTTP/1.1 reader of
/// Content-Length framed responses on top.
struct TlsClient {
    tls: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsClient {
    /// Connects to `addr` and completes a handshake for `name` (a DNS name is sent as
    /// SNI; an IP address sends no SNI).
    fn try_connect(
        addr: SocketAddr,
        config: &Arc<ClientConfig>,
        name: &str,
    ) -> Result<TlsClient, String> {
        let sock = TcpStream::connect_timeout(&addr, SOON)
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        sock.set_read_timeout(Some(READ_TIMEOUT))
            .and_then(|()| sock.set_write_timeout(Some(READ_TIMEOUT)))
            .and_then(|()| sock.set_nodelay(true))
            .map_err(|e| e.to_string())?;
        TlsClient::try_handshake(sock, config, name)
    }

    /// Completes a handshake for `name` over a connected socket.
    fn try_handshake(
        sock: TcpStream,
        config: &Arc<ClientConfig>,
        name: &str,
    ) -> Result<TlsClient, String> {
        let addr = sock.peer_addr().map_err(|e| e.to_string())?;
        let server_name =
            ServerName::try_from(name.to_string()).map_err(|e| format!("name {name:?}: {e}"))?;
        let conn = ClientConnection::new(Arc::clone(config), server_name)
            .map_err(|e| format!("client connection: {e}"))?;
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("TLS handshake with {addr} for {name:?}: {e}"))?;
        }
        Ok(TlsClient {
            tls,
            buf: Vec::new(),
        })
    }

    fn connect(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> TlsClient {
        TlsClient::try_connect(addr, config, name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The certificate the server presented (the leaf, first of its chain).
    fn presented(&self) -> CertificateDer<'static> {
        self.chain()[0].clone()
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.tls
            .conn
            .peer_certificates()
            .expect("a handshaken session has the server's certificates")
            .to_vec()
    }

    fn try_send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.tls
            .write_all(bytes)
            .and_then(|()| self.tls.flush())
            .map_err(|e| format!("TLS write: {e}"))
    }

    fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_request(&mut self, request: &str) -> Result<Response, String> {
        self.try_send(request.as_bytes())?;
        self.try_response()
    }

    fn request(&mut self, request: &str) -> Response {
        self.try_request(request).unwrap_or_else(|e| panic!("{e}"))
    }

    fn response(&mut self) -> Response {
        self.try_response().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads one response; its body must be framed by Content-Length (every test
    /// instance and clb's own answers frame it so) unless its status has none.
    fn try_response(&mut self) -> Result<Response, String> {
        let end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            self.fill()
                .map_err(|e| format!("no response head: {e}; got {:?}", preview(&self.buf)))?;
        };
        let head: Vec<u8> = self.buf.drain(..end).collect();
        let text = String::from_utf8_lossy(&head[..end - 4]).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("").to_string();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.to_string(), v.trim().to_string()))
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| {
                v.parse::<usize>()
                    .map_err(|e| format!("Content-Length {v:?}: {e}"))
            })
            .transpose()?;
        let bodiless = status / 100 == 1 || status == 204 || status == 304;
        let length = match length {
            Some(n) if !bodiless => n,
            None if bodiless => 0,
            _ => return Err(format!("unexpected framing in {text:?}")),
        };
        while self.buf.len() < length {
            self.fill()
                .map_err(|e| format!("body: {e} after {} of {length} bytes", self.buf.len()))?;
        }
        let body: Vec<u8> = self.buf.drain(..length).collect();
        Ok(Response {
            status_line,
            status,
            headers,
            head,
            wire_body: body.clone(),
            body,
            close_delimited: false,
        })
    }

    /// Reads some plaintext into `buf`; `Err` on close, error or timeout.
    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = vec![0u8; 65536];
        loop {
            match self.tls.read(&mut chunk) {
                Ok(0) => return Err("closed by the server (close_notify)".to_string()),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Reads exactly `n` bytes of plaintext.
    fn read_exactly(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            self.fill()
                .map_err(|e| format!("{e} after {} of {n} bytes", self.buf.len()))?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Waits up to `within` for the server to end the session with nothing unread
    /// before the end: `Ok(true)` after its close_notify, `Ok(false)` after a bare TCP
    /// close (a truncation); `Err` says what came instead.
    fn expect_end(&mut self, within: Duration) -> Result<bool, String> {
        if !self.buf.is_empty() {
            return Err(format!("unread bytes: {:?}", preview(&self.buf)));
        }
        let deadline = Instant::now() + within;
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("session still open after {within:?}"));
            }
            self.tls
                .sock
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.tls.read(&mut chunk) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    return Err(format!(
                        "bytes instead of the end: {:?}",
                        preview(&chunk[..n])
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("error instead of the end: {e}")),
            }
        }
    }

    /// Sends close_notify and shuts down the socket's write side: the client's half-close.
    fn half_close(&mut self) {
        self.tls.conn.send_close_notify();
        self.tls.flush().expect("send close_notify");
        self.tls
            .sock
            .shutdown(Shutdown::Write)
            .expect("shut down the write side");
    }
}

// ---------------------------------------------------------------------------------
// clb with a TLS listener
// ---------------------------------------------------------------------------------

/// clb with `https:PORT:http:80` on a free port of 127.0.0.1 in front of `instances`
/// (health check `HTTP:80/clb-health`), then `extra`.
fn https_clb(instances: &[Instance], extra: &[&str]) -> Clb {
    Clb::listening(
        &|port| format!("https:{port}:http:80"),
        "127.0.0.1",
        instances,
        extra,
        &[],
        DEFAULT_HEALTH_CHECK,
    )
}

/// clb with `ssl:PORT:tcp:80` on a free port of 127.0.0.1 in front of `instances`
/// (health check `TCP:80`), then `extra`.
fn ssl_clb(instances: &[Instance], extra: &[&str]) -> Clb {
    Clb::listening(
        &|port| format!("ssl:{port}:tcp:80"),
        "127.0.0.1",
        instances,
        extra,
        &[],
        DEFAULT_TCP_HEALTH_CHECK,
    )
}

/// The values of every header called `name` in the head an echo instance sent back.
fn echoed_values(r: &Response, name: &str) -> Vec<String> {
    echoed_header_lines(r)
        .iter()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// `len` pattern bytes starting at pattern offset `offset`.
fn pattern_at(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(pattern_byte).collect()
}

/// Sends SIGHUP to clb. Through kill(1) rather than libc, so the tests need no `unsafe`.
fn hup(clb: &Clb) {
    let status = Command::new("kill")
        .args(["-HUP", &clb.pid().to_string()])
        .status()
        .expect("run kill -HUP");
    assert!(status.success(), "kill -HUP {}: {status}", clb.pid());
}

/// A full handshake with `clb` for `localhost` and the certificate it presented.
fn presented_now(clb: &Clb, config: &Arc<ClientConfig>) -> CertificateDer<'static> {
    TlsClient::connect(clb.addr, config, "localhost").presented()
}

/// Waits until `streak` handshakes in a row present `want` (every worker has taken the
/// new certificates: connections spread over the workers). `Err` lists what came.
fn wait_presenting(
    clb: &Clb,
    config: &Arc<ClientConfig>,
    want: &CertificateDer<'static>,
    streak: usize,
) -> Result<(), String> {
    let deadline = Instant::now() + SOON;
    let (mut run, mut seen) = (0, Vec::new());
    while Instant::now() < deadline {
        let got = presented_now(clb, config) == *want;
        seen.push(got);
        run = if got { run + 1 } else { 0 };
        if run >= streak {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(5));
    }
    Err(format!(
        "no {streak} handshakes in a row presented the expected certificate within {SOON:?}; \
         handshakes that did, in order: {seen:?}"
    ))
}

// ---------------------------------------------------------------------------------
// HTTPS listeners
// ---------------------------------------------------------------------------------

#[test]
fn an_https_request_reaches_the_instance_as_http_with_forwarded_proto_and_port() {
    let certs = Certs::new(&[&["localhost"]]);
    let backend = Backend::echo(IP1, "i-1");
    let clb = https_clb(
        &[backend.instance("zone-a")],
        &certs.with(&["--workers", "2"]),
    );
    let mut client = TlsClient::connect(clb.addr, &certs.client(), "localhost");
    assert_eq!(client.presented(), certs.leaves[0].der);
    assert_eq!(
        client.chain().len(),
        2,
        "the whole --cert chain (leaf and CA) is presented"
    );
    // Client values of the two headers are replaced, as on an HTTP listener.
    let r = client.request(
        "GET /hello?x=1 HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: http\r\n\
         X-Forwarded-Port: 80\r\nX-Test: kept\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert_eq!(r.instance(), Some("i-1"));
    let seen = echoed(&r);
    assert!(
        seen.starts_with("GET /hello?x=1 HTTP/1.1\r\n"),
        "instance saw {seen:?}"
    );
    assert_eq!(
        echoed_values(&r, "x-forwarded-proto"),
        ["https"],
        "{seen:?}"
    );
    assert_eq!(
        echoed_values(&r, "x-forwarded-port"),
        [clb.port().to_string()],
        "{seen:?}"
    );
    assert_eq!(
        echoed_values(&r, "x-forwarded-for"),
        ["127.0.0.1"],
        "{seen:?}"
    );
    assert_eq!(echoed_values(&r, "x-test"), ["kept"], "{seen:?}");
    // The body the client decrypted is the head the instance received, byte for byte:
    // plain HTTP on the instance side.
    let heads = backend.heads();
    assert_eq!(heads.len(), 1, "requests the instance saw: {heads:?}");
    assert_eq!(r.body, heads[0], "{}", first_difference(&r.body, &heads[0]));
}

#[test]
fn one_tls_session_carries_keep_alive_pipelined_and_1_mib_requests_both_ways() {
    let certs = Certs::new(&[&["localhost"]]);
    let backend = Backend::echo(IP1, "i-1");
    let clb = https_clb(
        &[backend.instance("zone-a")],
        &certs.with(&["--workers", "2"]),
    );
    let mut client = TlsClient::connect(clb.addr, &certs.client(), "localhost");
    for i in 0..3 {
        let r = client.request(&get(&format!("/keep/{i}")));
        assert!(
            echoed(&r).starts_with(&format!("GET /keep/{i} HTTP/1.1\r\n")),
            "request {i}: instance saw {:?}",
            echoed(&r)
        );
    }
    // Two requests in one write: two responses, in order.
    client.send(format!("{}{}", get("/pipe/a"), get("/pipe/b")).as_bytes());
    for path in ["/pipe/a", "/pipe/b"] {
        let r = client.response();
        assert!(
            echoed(&r).starts_with(&format!("GET {path} HTTP/1.1\r\n")),
            "pipelined {path}: instance saw {:?}",
            echoed(&r)
        );
    }
    // 1 MiB down.
    backend.set_behavior(Behavior::Fixed {
        len: MIB,
        chunk: None,
    });
    let r = client.request(&get("/big"));
    assert_eq!(r.status, 200, "{}", r.status_line);
    let want = pattern(MIB);
    assert!(
        r.body == want,
        "1 MiB download: {}",
        first_difference(&r.body, &want)
    );
    // 1 MiB up.
    backend.set_behavior(Behavior::CountBody);
    client.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {MIB}\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    client.send(&want);
    let r = client.response();
    assert_eq!(r.status, 200, "{}", r.status_line);
    let sent = hash_of(&[&want]);
    assert_eq!(r.body_text(), upload_summary(&sent, &sent), "1 MiB upload");
    // And the session is still good for more.
    backend.set_behavior(Behavior::Echo);
    let r = client.request(&get("/after"));
    assert!(echoed(&r).starts_with("GET /after HTTP/1.1\r\n"));
    assert_eq!(backend.requests(), 8, "requests the instance saw");
}

#[test]
fn sni_picks_the_certificate_and_the_first_pair_is_the_default() {
    let certs = Certs::new(&[&["a.example"], &["b.example"]]);
    let backend = Backend::echo(IP1, "i-1");
    let clb = https_clb(
        &[backend.instance("zone-a")],
        &certs.with(&["--workers", "2"]),
    );
    let (a, b) = (&certs.leaves[0].der, &certs.leaves[1].der);
    // Names a certificate is valid for: fully verified against the CA.
    let verifying = certs.client();
    for (name, want, which) in [
        ("a.example", a, "A"),
        ("b.example", b, "B"),
        ("B.Example", b, "B (names match whatever their case)"),
    ] {
        let mut client = TlsClient::connect(clb.addr, &verifying, name);
        assert!(
            client.presented() == *want,
            "SNI {name:?}: expected cert {which}"
        );
        let r = client.request(&get(&format!("/sni/{name}")));
        assert_eq!(r.status, 200, "SNI {name:?}: {}", r.status_line);
    }
    // An unknown name, and no SNI at all (rustls sends none for an IP address): the
    // first pair, which is valid for neither, so only the accept-anything client takes it.
    let any = accept_any_client(&[&TLS13, &TLS12]);
    for name in ["c.example", "127.0.0.1"] {
        let mut client = TlsClient::connect(clb.addr, &any, name);
        assert!(
            client.presented() == *a,
            "{name:?}: expected the default cert A"
        );
        let r = client.request(&get("/default"));
        assert_eq!(r.status, 200, "{name:?}: {}", r.status_line);
    }
    let refused = TlsClient::try_connect(clb.addr, &verifying, "c.example");
    assert!(
        refused.is_err(),
        "a verifying client must refuse cert A for c.example"
    );
}

#[test]
fn without_a_certificate_clb_presents_a_self_signed_one_for_localhost() {
    let backend = Backend::echo(IP1, "i-1");
    let clb = https_clb(&[backend.instance("zone-a")], &["--workers", "2"]);
    assert!(
        clb.wait_for_log("self-signed", 1, SOON),
        "no self-signed warning in the log"
    );
    let any = accept_any_client(&[&TLS13, &TLS12]);
    let mut client = TlsClient::connect(clb.addr, &any, "localhost");
    let r = client.request(&get("/self-signed"));
    assert_eq!(r.status, 200, "{}", r.status_line);
    assert_eq!(
        client.chain().len(),
        1,
        "a self-signed certificate has no chain"
    );
    let cert = client.presented();
    let parsed = webpki::EndEntityCert::try_from(&cert).expect("a parseable certificate");
    for (name, valid) in [
        ("localhost", true),
        ("127.0.0.1", true),
        ("example.com", false),
    ] {
        let subject = ServerName::try_from(name).expect("name");
        assert_eq!(
            parsed.verify_is_valid_for_subject_name(&subject).is_ok(),
            valid,
            "is the self-signed certificate valid for {name}?"
        );
    }
    // Self-signed: a client that trusts this one certificate verifies it for localhost.
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).expect("the certificate as a root");
    let pinned = client_trusting(roots, &[&TLS13, &TLS12]);
    let mut again = TlsClient::connect(clb.addr, &pinned, "localhost");
    assert!(
        again.presented() == cert,
        "the same certificate on every handshake"
    );
    assert_eq!(again.request(&get("/pinned")).status, 200);
    // SIGHUP has no files to reload: the same certificate stays.
    hup(&clb);
    assert!(
        clb.wait_for_log("no --cert files to reload", 1, SOON),
        "SIGHUP without --cert"
    );
    assert!(
        presented_now(&clb, &any) == cert,
        "the self-signed certificate changed"
    );
}

// ---------------------------------------------------------------------------------
// SSL listeners
// ---------------------------------------------------------------------------------

#[test]
fn ssl_listener_echoes_1_mib_untouched_and_passes_the_client_half_close_on() {
    let certs = Certs::new(&[&["localhost"]]);
    let backend = TcpBackend::echo(IP1, "i-echo");
    let clb = ssl_clb(
        &[backend.instance("zone-a")],
        &certs.with(&["--workers", "2"]),
    );
    let mut client = TlsClient::connect(clb.addr, &certs.client(), "localhost");
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
    match client.expect_end(SOON) {
        Ok(true) => {}
        Ok(false) => panic!("clb closed the session without close_notify"),
        Err(e) => panic!("after the client's half-close: {e}"),
    }
    let mut conn = None;
    let ended = wait_until(SOON, || {
        conn = backend.data_conns().into_iter().next();
        conn.as_ref().is_some_and(|c| c.eof || c.reset)
    });
    assert!(
        ended,
        "the instance saw no end: {:?}",
        backend.data_conns().len()
    );
    let conn = conn.expect("the tunnel's connection");
    assert!(conn.eof && !conn.reset, "a half-close (EOF), not a reset");
    assert_eq!(conn.total, MIB, "bytes the instance received");
    assert!(
        conn.received == pattern(MIB),
        "the instance got plaintext, untouched: {}",
        first_difference(&conn.received, &pattern(MIB))
    );
}

/// What a [`ScriptedBackend`] does on each connection.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// Server-first protocols (SMTP, MySQL, ...): writes this many pattern bytes at
    /// once, then echoes what it reads; at EOF it half-closes too.
    Banner(usize),
    /// Waits for a line (through `\n`), then writes this many pattern bytes and
    /// half-closes, and keeps reading until EOF.
    HalfCloseOnLine(usize),
}

/// One connection as a [`ScriptedBackend`] saw it.
#[derive(Clone, Debug, Default)]
struct ScriptedConn {
    received: Vec<u8>,
    eof: bool,
}

/// A test instance for SSL listeners whose behaviour [`TcpBackend`] has no variant for:
/// a thread per connection, as its [`Script`] says, keeping what each connection
/// received (a TCP health probe receives nothing).
struct ScriptedBackend {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<ScriptedConn>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl ScriptedBackend {
    fn start(ip_str: &str, script: Script) -> ScriptedBackend {
        let listener = TcpListener::bind((ip(ip_str), 0)).expect("bind a scripted instance");
        let addr = listener.local_addr().expect("addr");
        let conns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, halt) = (Arc::clone(&conns), Arc::clone(&stop));
        let acceptor = thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (log, halt) = (Arc::clone(&log), Arc::clone(&halt));
                thread::spawn(move || serve_script(stream, script, &log, &halt));
            }
        });
        ScriptedBackend {
            addr,
            conns,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn instance(&self) -> Instance {
        Instance::new("i-scripted", self.addr, "zone-a").expecting_healthy(true)
    }

    /// Waits until a connection that received a byte has seen EOF; returns it.
    fn finished_data_conn(&self, within: Duration) -> ScriptedConn {
        let mut found = None;
        let ok = wait_until(within, || {
            let conns = self.conns.lock().expect("lock");
            found = conns.iter().find(|c| !c.received.is_empty()).cloned();
            found.as_ref().is_some_and(|c| c.eof)
        });
        assert!(
            ok,
            "no connection that received bytes saw EOF: {:?}",
            self.conns
                .lock()
                .expect("lock")
                .iter()
                .map(|c| (preview(&c.received), c.eof))
                .collect::<Vec<_>>()
        );
        found.expect("found")
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve_script(
    mut stream: TcpStream,
    script: Script,
    log: &Mutex<Vec<ScriptedConn>>,
    stop: &AtomicBool,
) {
    let index = {
        let mut log = log.lock().expect("lock");
        log.push(ScriptedConn::default());
        log.len() - 1
    };
    if stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .and_then(|()| stream.set_write_timeout(Some(READ_TIMEOUT)))
        .is_err()
    {
        return;
    }
    let mut echo = false;
    match script {
        // A probe may be gone already: the banner fails and reading sees the end.
        Script::Banner(len) => echo = write_pattern(&mut stream, 0, len),
        Script::HalfCloseOnLine(_) => {}
    }
    let mut chunk = [0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut chunk) {
            Ok(0) => {
                log.lock().expect("lock")[index].eof = true;
                if echo {
                    let _ = stream.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) => {
                let had_line = {
                    let mut log = log.lock().expect("lock");
                    let had = log[index].received.contains(&b'\n');
                    log[index].received.extend_from_slice(&chunk[..n]);
                    had
                };
                if echo && stream.write_all(&chunk[..n]).is_err() {
                    return;
                }
                if let Script::HalfCloseOnLine(len) = script {
                    if !had_line && chunk[..n].contains(&b'\n') {
                        if !write_pattern(&mut stream, 0, len) {
                            return;
                        }
                        let _ = stream.shutdown(Shutdown::Write);
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

#[test]
fn ssl_listener_passes_the_instance_half_close_on_while_the_client_keeps_sending() {
    const DOWN: usize = 256 * 1024;
    let certs = Certs::new(&[&["localhost"]]);
    let backend = ScriptedBackend::start(IP2, Script::HalfCloseOnLine(DOWN));
    let clb = ssl_clb(&[backend.instance()], &certs.with(&["--workers", "2"]));
    let mut client = TlsClient::connect(clb.addr, &certs.client(), "localhost");
    client.send(b"half-close now\n");
    let got = client
        .read_exactly(DOWN)
        .unwrap_or_else(|e| panic!("the instance's bytes: {e}"));
    assert!(
        got == pattern(DOWN),
        "{}",
        first_difference(&got, &pattern(DOWN))
    );
    match client.expect_end(SOON) {
        Ok(true) => {}
        Ok(false) => panic!("the instance's half-close came as a bare TCP close"),
        Err(e) => panic!("after the instance's half-close: {e}"),
    }
    // The other direction stays open.
    let late = pattern(100 * 1024);
    client.send(&late);
    client.half_close();
    let conn = backend.finished_data_conn(SOON);
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
    let certs = Certs::new(&[&["localhost"]]);
    let backend = ScriptedBackend::start(IP2, Script::Banner(BANNER));
    let clb = ssl_clb(&[backend.instance()], &certs.with(&["--workers", "2"]));
    let mut client = TlsClient::connect(clb.addr, &certs.client(), "localhost");
    let got = client
        .read_exactly(BANNER)
        .unwrap_or_else(|e| panic!("the instance's banner: {e}"));
    assert!(
        got == pattern(BANNER),
        "{}",
        first_difference(&got, &pattern(BANNER))
    );
    let ping = b"ping after the banner";
    client.send(ping);
    let back = client
        .read_exactly(ping.len())
        .unwrap_or_else(|e| panic!("echo after the banner: {e}"));
    assert_eq!(back, ping);
    client.half_close();
    match client.expect_end(SOON) {
        Ok(true) => {}
        Ok(false) => panic!("clb closed the session without close_notify"),
        Err(e) => panic!("after the client's half-close: {e}"),
    }
    let conn = backend.finished_data_conn(SOON);
    assert_eq!(conn.received, ping, "what the instance received");
}

#[test]
fn ssl_listener_delivers_what_the_instance_sent_and_closed_before_the_handshake() {
    const SENT: usize = 16 * 1024;
    let certs = Certs::new(&[&["localhost"]]);
    let backend = TcpBackend::start(IP1, "i-early", TcpBehavior::SendThenHalfClose(SENT));
    let clb = ssl_clb(
        &[backend.instance("zone-a")],
        &certs.with(&["--workers", "2"]),
    );
    // The tunnel connects to the instance on accept, before any handshake: let the
    // instance send and half-close before the ClientHello leaves.
    let before = backend.accepted();
    let sock = tcp_connect(clb.addr);
    assert!(
        wait_until(SOON, || backend.accepted() > before),
        "the tunnel never connected to the instance"
    );
    let mut client = TlsClient::try_handshake(sock, &certs.client(), "localhost")
        .unwrap_or_else(|e| panic!("{e}"));
    let got = client
        .read_exactly(SENT)
        .unwrap_or_else(|e| panic!("the instance's bytes: {e}"));
    assert!(
        got == pattern(SENT),
        "{}",
        first_difference(&got, &pattern(SENT))
    );
    match client.expect_end(SOON) {
        Ok(true) => {}
        Ok(false) => panic!("the instance's half-close came as a bare TCP close"),
        Err(e) => panic!("after the instance's half-close: {e}"),
    }
    // The client's direction is still open.
    let late = b"sent after the instance's half-close";
    client.send(late);
    client.half_close();
    let mut conn = None;
    let ended = wait_until(SOON, || {
        conn = backend.conn_starting_with(late);
        conn.as_ref().is_some_and(|c| c.eof || c.reset)
    });
    assert!(ended, "the instance did not get the late bytes and an EOF");
    let conn = conn.expect("found");
    assert!(
        conn.eof && !conn.reset,
        "the client's half-close came as EOF"
    );
}

// ---------------------------------------------------------------------------------
// Protocol versions, policy, bad clients
// ---------------------------------------------------------------------------------

#[test]
fn tls_12_and_tls_13_clients_get_the_policy_suites_in_server_order() {
    let certs = Certs::new(&[&["localhost"]]);
    let backend = Backend::echo(IP1, "i-1");
    let clb = https_clb(
        &[backend.instance("zone-a")],
        &certs.with(&["--ssl-policy", "ELBSecurityPolicy-TLS-1-2-2017-01"]),
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
        let mut client = TlsClient::connect(clb.addr, &certs.ca.client(&[version]), "localhost");
        assert_eq!(client.tls.conn.protocol_version(), Some(want_version));
        let suite = client
            .tls
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
    let mut roots = RootCertStore::empty();
    roots.add(certs.ca.der.clone()).expect("root");
    let config = ClientConfig::builder_with_provider(Arc::new(chacha_only))
        .with_protocol_versions(&[&TLS12])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let refused = TlsClient::try_connect(clb.addr, &Arc::new(config), "localhost");
    assert!(
        refused.is_err(),
        "TLS 1.2 with ECDHE-ECDSA-CHACHA20-POLY1305 only is not in the policy"
    );
    assert_eq!(backend.requests(), 2);
}

/// Reads whatever comes until the peer ends the connection (EOF or reset) or `within`
/// passes; `Err` if it is still open then.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "still open after {within:?}, having sent {:?}",
                preview(&got)
            ));
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Ok(got),
        }
    }
}

#[test]
fn a_plaintext_client_gets_an_alert_and_a_close_and_clb_keeps_serving() {
    let certs = Certs::new(&[&["localhost"]]);
    let backend = Backend::echo(IP1, "i-1");
    let clb = https_clb(
        &[backend.instance("zone-a")],
        &certs.with(&["--workers", "2"]),
    );
    let mut raw = tcp_connect(clb.addr);
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
    let mut partial = tcp_connect(clb.addr);
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("write a partial record");
    partial.shutdown(Shutdown::Write).expect("half-close");
    read_until_closed(&mut partial, SOON).unwrap_or_else(|e| panic!("partial record: {e}"));
    // A client that connects and goes away without a byte.
    drop(tcp_connect(clb.addr));
    assert_eq!(backend.requests(), 0, "nothing may reach the instance");
    let mut clb = clb;
    assert!(clb.is_running(), "clb died");
    let mut client = TlsClient::connect(clb.addr, &certs.client(), "localhost");
    let r = client.request(&get("/after-garbage"));
    assert!(echoed(&r).starts_with("GET /after-garbage HTTP/1.1\r\n"));
}

#[test]
fn a_handshake_that_never_finishes_is_closed_at_the_idle_timeout() {
    let certs = Certs::new(&[&["localhost"]]);
    let backend = Backend::echo(IP1, "i-1");
    let clb = https_clb(
        &[backend.instance("zone-a")],
        &certs.with(&["--workers", "1", "--idle-timeout", "1"]),
    );
    let started = Instant::now();
    let mut silent = tcp_connect(clb.addr);
    let mut partial = tcp_connect(clb.addr);
    // The first bytes of a ClientHello record, and then nothing: the socket stays open.
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("write a partial record");
    for (what, stream) in [("no byte", &mut silent), ("half a record", &mut partial)] {
        read_until_closed(stream, SOON).unwrap_or_else(|e| panic!("{what}: {e}"));
        let after = started.elapsed();
        assert!(
            after >= Duration::from_millis(900),
            "{what}: closed after only {after:?} (--idle-timeout 1)"
        );
        assert!(
            after <= Duration::from_millis(3000),
            "{what}: closed after {after:?} (--idle-timeout 1)"
        );
    }
    let mut client = TlsClient::connect(clb.addr, &certs.client(), "localhost");
    assert_eq!(client.request(&get("/after")).status, 200);
}

#[test]
fn an_https_listener_without_an_instance_answers_503_inside_tls() {
    let certs = Certs::new(&[&["localhost"]]);
    let clb = https_clb(&[], &certs.with(&["--workers", "2"]));
    let mut client = TlsClient::connect(clb.addr, &certs.client(), "localhost");
    for _ in 0..2 {
        let r = client.request(&get("/"));
        assert_canned(
            &r,
            "HTTP/1.1 503 Service Unavailable: Back-end server is at capacity",
        );
    }
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

// ---------------------------------------------------------------------------------
// Certificate reload
// ---------------------------------------------------------------------------------

#[test]
fn sighup_reloads_certificates_and_a_bad_file_keeps_the_old_ones() {
    let dir = TempDir::new("reload");
    let ca = TestCa::new();
    let (a, b, c) = (
        ca.leaf(&["localhost"], 1),
        ca.leaf(&["localhost"], 2),
        ca.leaf(&["localhost"], 3),
    );
    let (cert, key) = write_pair(&dir, "site", &a);
    let backend = Backend::echo(IP1, "i-1");
    let (cert_flag, key_flag) = (path_str(&cert), path_str(&key));
    let mut clb = https_clb(
        &[backend.instance("zone-a")],
        &["--cert", &cert_flag, "--key", &key_flag, "--workers", "2"],
    );
    let config = ca.client(&[&TLS13, &TLS12]);
    let mut old = TlsClient::connect(clb.addr, &config, "localhost");
    assert!(old.presented() == a.der, "cert A at start");
    assert_eq!(old.request(&get("/before")).status, 200);

    // New files, SIGHUP: new handshakes get B, the open session carries on.
    write_pair(&dir, "site", &b);
    hup(&clb);
    assert!(
        clb.wait_for_log("certificates reloaded", 1, SOON),
        "no 'certificates reloaded' after SIGHUP"
    );
    wait_presenting(&clb, &config, &b.der, 10).unwrap_or_else(|e| panic!("after reload: {e}"));
    let r = old.request(&get("/during"));
    assert!(
        echoed(&r).starts_with("GET /during HTTP/1.1\r\n"),
        "old session"
    );

    // A certificate file that is not PEM: not reloaded, B stays.
    fs::write(&cert, b"this is not a certificate\n").expect("overwrite the cert file");
    hup(&clb);
    assert!(
        clb.wait_for_log("certificates not reloaded", 1, SOON),
        "no 'certificates not reloaded' after SIGHUP with a bad file"
    );
    for i in 0..10 {
        assert!(
            presented_now(&clb, &config) == b.der,
            "handshake {i} after a bad reload: not cert B"
        );
    }
    // A key that does not match the certificate: not reloaded either.
    fs::write(&cert, c.chain_pem.as_bytes()).expect("write cert C");
    hup(&clb);
    assert!(
        clb.wait_for_log("certificates not reloaded", 2, SOON),
        "no second 'certificates not reloaded' (cert C with key B); log:\n{}",
        clb.log_text()
    );
    for i in 0..10 {
        assert!(
            presented_now(&clb, &config) == b.der,
            "handshake {i} after a mismatched key: not cert B"
        );
    }
    assert_eq!(
        clb.log_lines_with("certificates reloaded").len(),
        1,
        "only the first reload succeeded"
    );
    let r = old.request(&get("/end"));
    assert!(
        echoed(&r).starts_with("GET /end HTTP/1.1\r\n"),
        "old session at the end"
    );
    assert!(clb.is_running(), "clb survived three SIGHUPs");
}

// ---------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------

#[test]
fn fifty_concurrent_tls_clients_each_make_five_requests() {
    const CLIENTS: usize = 50;
    const REQUESTS: usize = 5;
    let certs = Certs::new(&[&["localhost"]]);
    let backend = Backend::echo(IP1, "i-1");
    let clb = https_clb(
        &[backend.instance("zone-a")],
        &certs.with(&["--workers", "2"]),
    );
    let config = certs.client();
    let start = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (config, start, addr) = (Arc::clone(&config), Arc::clone(&start), clb.addr);
            thread::spawn(move || -> Result<(), String> {
                start.wait();
                let mut client = TlsClient::try_connect(addr, &config, "localhost")?;
                for i in 0..REQUESTS {
                    let path = format!("/client/{t}/{i}");
                    let r = client.try_request(&get(&path))?;
                    let want = format!("GET {path} HTTP/1.1\r\n");
                    if r.status != 200 || !r.body.starts_with(want.as_bytes()) {
                        return Err(format!("{path}: {} {:?}", r.status_line, preview(&r.body)));
                    }
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = threads
        .into_iter()
        .enumerate()
        .filter_map(|(t, h)| match h.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("client {t}: {e}")),
            Err(_) => Some(format!("client {t} panicked")),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    assert_eq!(backend.requests(), CLIENTS * REQUESTS);
}
