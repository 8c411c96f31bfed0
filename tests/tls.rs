//! HTTPS and SSL listeners (spec §13; issue 6): TLS terminated by clb in front of plain
//! HTTP and TCP instances.
//!
//! - `https`: an HTTPS request reaching the instance as HTTP with `X-Forwarded-Proto:
//!   https` and the listener's port; keep-alive, pipelining and 1 MiB bodies both ways
//!   on one session; certificate choice by SNI (the first pair for an unknown name or no
//!   SNI at all); the self-signed default without `--cert`; clb's own 503 inside TLS;
//!   50 concurrent clients.
//! - `ssl`: SSL listeners forwarding bytes untouched, half-close passed on both ways, an
//!   instance that speaks first (before and during the client's handshake).
//! - `handshake`: TLS 1.2 and 1.3 clients and the policy's server-ordered AEAD suites,
//!   policies rustls cannot honour refused at start, a plaintext client, handshakes cut
//!   short (half a ClientHello, then a close or silence) while clb keeps serving.
//! - `reload`: SIGHUP reloading the certificate files (a bad file keeps the old ones),
//!   and reloads under a steady load of keep-alive and new-connection clients with no
//!   failed request.
//! - `clients`: real third-party clients: `curl`, `openssl s_client` and Python's `ssl`
//!   module (`tests/tls/python_client.py`). A missing tool fails its test, naming it.
//!
//! Certificates are made per test with rcgen and written under the temp directory
//! ([`common::tls`]). The rustls client runs over a blocking socket with
//! [`common::READ_TIMEOUT`] on every read, so a broken listener fails a test instead of
//! hanging it.

mod common;

#[path = "tls/clients.rs"]
mod clients;
#[path = "tls/handshake.rs"]
mod handshake;
#[path = "tls/https.rs"]
mod https;
#[path = "tls/reload.rs"]
mod reload;
#[path = "tls/ssl.rs"]
mod ssl;

use common::tls::{Certs, TlsClient};
use common::{Clb, Instance};
use std::time::Duration;

pub const MIB: usize = 1 << 20;
/// How long something that should be immediate may take.
pub const SOON: Duration = Duration::from_secs(5);
/// How long a whole 1 MiB transfer may take.
pub const TRANSFER: Duration = Duration::from_secs(30);

/// clb with a TLS listener in front of `instances`, serving certificates signed by a
/// test CA: the usual start of a test here.
pub struct TlsClb {
    pub clb: Clb,
    pub certs: Certs,
}

impl TlsClb {
    /// An HTTPS listener ([`Clb::https`]) with a certificate for `localhost` and
    /// `--workers 2` unless `extra` says otherwise, then `extra`.
    pub fn https(instances: &[Instance], extra: &[&str]) -> TlsClb {
        TlsClb::start(Clb::https, &[&["localhost"]], instances, extra)
    }

    /// [`TlsClb::https`] with a certificate for each list of `names`, in order: SNI
    /// picks among them, the first is the default.
    pub fn https_sni(names: &[&[&str]], instances: &[Instance], extra: &[&str]) -> TlsClb {
        TlsClb::start(Clb::https, names, instances, extra)
    }

    /// An SSL listener ([`Clb::ssl`]), as [`TlsClb::https`].
    pub fn ssl(instances: &[Instance], extra: &[&str]) -> TlsClb {
        TlsClb::start(Clb::ssl, &[&["localhost"]], instances, extra)
    }

    fn start(
        listener: fn(&[Instance], &[&str]) -> Clb,
        names: &[&[&str]],
        instances: &[Instance],
        extra: &[&str],
    ) -> TlsClb {
        let certs = Certs::new(names);
        let mut args = certs.with(extra);
        if !extra.contains(&"--workers") {
            args.extend_from_slice(&["--workers", "2"]);
        }
        TlsClb {
            clb: listener(instances, &args),
            certs,
        }
    }

    /// A new session for `localhost` from a client that trusts the test CA.
    pub fn client(&self) -> TlsClient {
        TlsClient::open(self.clb.addr, &self.certs.client(), "localhost")
    }
}
