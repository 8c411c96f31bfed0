//! TLS for HTTPS and SSL listeners: certificates, SNI, and ELB security policies as
//! rustls can honour them (spec §13).
//!
//! Each `--cert`/`--key` pair is one certificate; the client's SNI name picks the first
//! pair whose certificate is valid for it, and the first pair is the default. Without
//! any pair clb makes a self-signed certificate at start (and says so), so a TLS listener
//! can be tried at once. Policies: rustls implements TLS 1.2 and 1.3 with AEAD suites
//! only, so ELB policies that need TLS 1.0/1.1 or CBC suites are refused by name rather
//! than silently weakened or strengthened; see README.

pub mod backend;

use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// The policy clb applies when none is named: ELB's TLS 1.2 policy (its ECDHE-GCM part,
/// which is all of it rustls has), with TLS 1.3 on.
pub const DEFAULT_POLICY: &str = "ELBSecurityPolicy-TLS-1-2-2017-01";

/// Spec §13.3's predefined names that need protocols or suites rustls lacks.
const UNSUPPORTED_POLICIES: &[&str] = &[
    "ELBSecurityPolicy-2016-08",
    "ELBSecurityPolicy-TLS-1-1-2017-01",
    "ELBSecurityPolicy-2015-05",
    "ELBSecurityPolicy-2015-03",
    "ELBSecurityPolicy-2015-02",
    "ELBSecurityPolicy-2014-10",
    "ELBSecurityPolicy-2014-01",
    "ELBSecurityPolicy-2011-08",
    "ELBSample-ELBDefaultNegotiationPolicy",
    "ELBSample-OpenSSLDefaultNegotiationPolicy",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug)]
pub enum TlsError {
    Policy(String),
    Cert(PathBuf, String),
    Key(PathBuf, String),
    Other(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Policy(why) => f.write_str(why),
            TlsError::Cert(path, why) => write!(f, "certificate {}: {why}", path.display()),
            TlsError::Key(path, why) => write!(f, "key {}: {why}", path.display()),
            TlsError::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for TlsError {}

/// Checks a security policy name; `Ok` for the ones clb can honour.
pub fn check_policy(name: &str) -> Result<(), String> {
    if name == DEFAULT_POLICY {
        return Ok(());
    }
    if UNSUPPORTED_POLICIES.contains(&name) {
        return Err(format!(
            "{name} needs TLS 1.0/1.1 or CBC cipher suites, which rustls does not implement; \
             use {DEFAULT_POLICY}"
        ));
    }
    Err(format!(
        "unknown security policy; the one supported is {DEFAULT_POLICY}"
    ))
}

/// The server configuration every TLS listener uses.
pub fn server_config(pairs: &[CertPair], policy: &str) -> Result<Arc<ServerConfig>, TlsError> {
    check_policy(policy).map_err(TlsError::Policy)?;
    let provider = Arc::new(policy_provider());
    let mut keys = Vec::with_capacity(pairs.len().max(1));
    for pair in pairs {
        keys.push(load_pair(pair, &provider)?);
    }
    if keys.is_empty() {
        log::warn!(
            "no --cert/--key given: TLS listeners use a self-signed certificate for localhost"
        );
        keys.push(self_signed(&provider)?);
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Other(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { keys }));
    // Spec §13.11: every predefined policy uses server order preference.
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// TLS 1.3 suites, then ELB's TLS-1-2-2017-01 list as rustls has it (ECDHE with GCM).
fn policy_provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::cipher_suite as suite;
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            suite::TLS13_AES_128_GCM_SHA256,
            suite::TLS13_AES_256_GCM_SHA384,
            suite::TLS13_CHACHA20_POLY1305_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ],
        ..provider::default_provider()
    }
}

fn load_pair(
    pair: &CertPair,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pair.cert)
        .map_err(|e| TlsError::Cert(pair.cert.clone(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(pair.cert.clone(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Cert(
            pair.cert.clone(),
            "no CERTIFICATE in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&pair.key)
        .map_err(|e| TlsError::Key(pair.key.clone(), e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key(pair.key.clone(), e.to_string()))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        TlsError::Key(
            pair.key.clone(),
            format!("does not match the certificate: {e}"),
        )
    })?;
    Ok(Arc::new(certified))
}

fn self_signed(provider: &rustls::crypto::CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Other(e.to_string()))?;
    let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .map_err(|e| TlsError::Other(e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Other(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![generated.cert.der().clone()],
        signing,
    )))
}

/// Picks the first certificate valid for the client's SNI name; the first one otherwise.
#[derive(Debug)]
struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let default = self.keys.first().cloned();
        if self.keys.len() < 2 {
            return default;
        }
        let Some(name) = hello
            .server_name()
            .and_then(|n| ServerName::try_from(n.to_string()).ok())
        else {
            return default;
        };
        self.keys
            .iter()
            .find(|key| {
                key.end_entity_cert()
                    .ok()
                    .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
                    .is_some_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
            })
            .cloned()
            .or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_clb_cannot_honour_are_refused_by_name() {
        assert!(check_policy(DEFAULT_POLICY).is_ok());
        assert!(check_policy("ELBSecurityPolicy-2016-08")
            .unwrap_err()
            .contains("rustls"));
        assert!(check_policy("made-up").unwrap_err().contains("unknown"));
    }

    #[test]
    fn a_self_signed_config_builds() {
        let config = server_config(&[], DEFAULT_POLICY).unwrap();
        assert!(config.ignore_client_order);
    }

    #[test]
    fn missing_files_are_named() {
        let pair = CertPair {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let e = server_config(&[pair], DEFAULT_POLICY)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }
}
