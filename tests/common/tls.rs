//! TLS for the end-to-end tests: certificates made with rcgen (a test CA and the leaves
//! it signs, or a self-signed leaf), the temp files clb and third-party clients read
//! them from, rustls client configs, a [`TlsClient`] (the raw HTTP [`Client`] over a
//! rustls session), a rustls server config for TLS test instances, and clb with an
//! HTTPS or SSL listener.
//!
//! Clients never resume sessions: every connection makes a full handshake, so it sees
//! the certificate the server holds right now. A client either trusts one test CA (or
//! one pinned certificate) and checks the name, or takes any certificate for any name
//! ([`AcceptAnyCert`], for the self-signed default and names no certificate is valid
//! for) while still checking that the server holds the presented certificate's key.

use super::{
    preview, read_until_end, Clb, Client, End, Instance, Transport, DEFAULT_HEALTH_CHECK,
    DEFAULT_TCP_HEALTH_CHECK, READ_TIMEOUT,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::version::{TLS12, TLS13};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme, StreamOwned, SupportedProtocolVersion,
};
use std::fs;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a TCP connect to clb may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------

static DIR_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A directory of its own under the temp directory, removed with everything in it on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "clb-test-{}-{}-{tag}",
            std::process::id(),
            DIR_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {path:?}: {e}"));
        TempDir(path)
    }

    /// Writes (or overwrites) `name` in the directory; returns its path as a flag value.
    pub fn write(&self, name: &str, contents: &[u8]) -> String {
        let path = self.0.join(name);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
        path.to_str().expect("temp paths are UTF-8").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------

/// A test certificate authority that signs leaves.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
    pub pem: String,
    /// The serial number of the last leaf signed.
    serial: AtomicU64,
}

/// A certificate and its key: what clb (`--cert` chain and `--key`) or a TLS test
/// instance serves, and what a client should see.
pub struct Leaf {
    /// The leaf alone, as the server presents it first.
    pub der: CertificateDer<'static>,
    /// The leaf alone, PEM (what `--backend-public-key` and `--backend-ca` take).
    pub cert_pem: String,
    /// The leaf then its CA, PEM (the leaf alone when self-signed): a chain, as `--cert`
    /// takes it.
    pub chain_pem: String,
    /// PKCS#8.
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
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
            serial: AtomicU64::new(0),
        }
    }

    /// A leaf for `names` (its common name is the first), with its own new key and the
    /// next serial number.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        let serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
        params.serial_number = Some(SerialNumber::from(serial));
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client that trusts only this CA, offering `versions`.
    pub fn client(&self, versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
        client_trusting(&[&self.der], versions)
    }
}

impl Leaf {
    /// A self-signed certificate for `names`.
    pub fn self_signed(names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let made = rcgen::generate_simple_self_signed(names).expect("self-signed certificate");
        Leaf {
            der: made.cert.der().clone(),
            cert_pem: made.cert.pem(),
            chain_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
        }
    }

    /// Writes the chain as `STEM.pem` and the key as `STEM.key` in `dir` (overwriting
    /// them); returns both paths.
    pub fn write_pair(&self, dir: &TempDir, stem: &str) -> (String, String) {
        (
            dir.write(&format!("{stem}.pem"), self.chain_pem.as_bytes()),
            dir.write(&format!("{stem}.key"), self.key_pem.as_bytes()),
        )
    }

    /// A rustls server presenting this certificate (TLS 1.2 and 1.3), for TLS instances.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("the leaf key");
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.der.clone()], key)
            .expect("a certificate and its key");
        Arc::new(config)
    }
}

/// One CA, one leaf per name list, their files (and the CA's, `ca.pem`), and the
/// `--cert`/`--key` flags naming the leaves in order (the first is clb's default).
pub struct Certs {
    pub dir: TempDir,
    pub ca: TestCa,
    pub leaves: Vec<Leaf>,
    /// The CA certificate's file, for third-party clients (`--cacert`, `-CAfile`).
    pub ca_file: String,
    flags: Vec<String>,
}

impl Certs {
    pub fn new(names: &[&[&str]]) -> Certs {
        let dir = TempDir::new("certs");
        let ca = TestCa::new();
        let ca_file = dir.write("ca.pem", ca.pem.as_bytes());
        let mut leaves = Vec::new();
        let mut flags = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let leaf = ca.leaf(n);
            let (cert, key) = leaf.write_pair(&dir, &format!("leaf{i}"));
            flags.extend(["--cert".to_string(), cert, "--key".to_string(), key]);
            leaves.push(leaf);
        }
        Certs {
            dir,
            ca,
            leaves,
            ca_file,
            flags,
        }
    }

    /// The certificate flags followed by `extra`.
    pub fn with<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        args
    }

    /// A TLS 1.2 and 1.3 client that trusts the CA.
    pub fn client(&self) -> Arc<ClientConfig> {
        self.ca.client(&[&TLS13, &TLS12])
    }
}

// ---------------------------------------------------------------------------------
// Client configs
// ---------------------------------------------------------------------------------

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A client that trusts exactly `roots` (CA certificates, or pinned self-signed ones),
/// offering `versions`, without session resumption.
pub fn client_trusting(
    roots: &[&CertificateDer<'static>],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).expect("a root certificate");
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// A client that takes any certificate for any name ([`AcceptAnyCert`]), offering
/// `versions`, without session resumption.
pub fn accept_any_client(versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
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
pub struct AcceptAnyCert(Arc<CryptoProvider>);

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

// ---------------------------------------------------------------------------------
// TLS client
// ---------------------------------------------------------------------------------

/// A rustls session over a blocking socket whose reads and writes time out.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// The raw HTTP [`Client`] over a TLS session whose handshake is done.
pub type TlsClient = Client<TlsStream>;

impl Transport for TlsStream {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

impl Client<TlsStream> {
    /// Connects to `addr` and completes a handshake for `name` (a DNS name is sent as
    /// SNI; an IP address sends none).
    pub fn try_open(
        addr: SocketAddr,
        config: &Arc<ClientConfig>,
        name: &str,
    ) -> Result<TlsClient, String> {
        let sock = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        sock.set_read_timeout(Some(READ_TIMEOUT))
            .and_then(|()| sock.set_write_timeout(Some(READ_TIMEOUT)))
            .and_then(|()| sock.set_nodelay(true))
            .map_err(|e| e.to_string())?;
        TlsClient::try_handshake(sock, config, name)
    }

    pub fn open(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> TlsClient {
        TlsClient::try_open(addr, config, name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Completes a handshake for `name` over a connected socket.
    pub fn try_handshake(
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
        Ok(Client::over(tls))
    }

    /// The certificate the server presented (the leaf, first of its chain).
    pub fn presented(&self) -> CertificateDer<'static> {
        self.chain()[0].clone()
    }

    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.stream
            .conn
            .peer_certificates()
            .expect("a handshaken session has the server's certificates")
            .to_vec()
    }

    /// Waits up to `within` for the server to end the session with nothing unread
    /// before the end: `Ok(true)` after its close_notify, `Ok(false)` after a bare TCP
    /// close (a truncation); `Err` says what came instead.
    pub fn expect_end(&mut self, within: Duration) -> Result<bool, String> {
        if !self.buf.is_empty() {
            return Err(format!("unread bytes: {:?}", preview(&self.buf)));
        }
        let mut out = Vec::new();
        match read_until_end(&mut self.stream, &mut out, 0, within) {
            End::Eof => Ok(true),
            End::Failed(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            End::Failed(e) => Err(format!("error instead of the end: {e}")),
            End::Open => Err(format!("session still open after {within:?}")),
            End::TooMuch => Err(format!("bytes instead of the end: {:?}", preview(&out))),
        }
    }

    /// Sends close_notify and shuts down the socket's write side: the client's half-close.
    pub fn half_close(&mut self) {
        self.stream.conn.send_close_notify();
        self.stream.flush().expect("send close_notify");
        self.stream
            .sock
            .shutdown(Shutdown::Write)
            .expect("shut down the write side");
    }
}

// ---------------------------------------------------------------------------------
// clb with a TLS listener
// ---------------------------------------------------------------------------------

impl Clb {
    /// clb with `https:PORT:http:80` on a free port of 127.0.0.1 in front of `instances`
    /// (health check `HTTP:80/clb-health` unless `extra` has one), then `extra`.
    pub fn https(instances: &[Instance], extra: &[&str]) -> Clb {
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
    /// (health check `TCP:80` unless `extra` has one), then `extra`.
    pub fn ssl(instances: &[Instance], extra: &[&str]) -> Clb {
        Clb::listening(
            &|port| format!("ssl:{port}:tcp:80"),
            "127.0.0.1",
            instances,
            extra,
            &[],
            DEFAULT_TCP_HEALTH_CHECK,
        )
    }
}
