//! TLS from clb to instances with an HTTPS or SSL instance protocol (spec §13.15–13.16).
//!
//! ELB does not validate back-end certificates unless a back-end authentication policy
//! names the public keys an instance may present; clb does the same: by default any
//! certificate is accepted (the handshake signature is still checked, so the peer holds
//! the key it presented). `--backend-public-key` pins keys: the instance's leaf
//! certificate must carry one of them. `--backend-ca` additionally requires a chain to
//! that CA; names are not checked, because instances are addressed by IP and ELB sends
//! no SNI to them.

use super::TlsError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the back-end side of TLS checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendTls {
    /// `--backend-ca`: certificates (PEM) an instance's chain must lead to.
    pub ca: Option<PathBuf>,
    /// `--backend-public-key`: PEM files holding a public key or a certificate.
    pub public_keys: Vec<PathBuf>,
}

/// The client configuration every worker uses towards TLS instances.
pub fn client_config(settings: &BackendTls) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_pinned(settings, None)
}

/// [`client_config`] for an instance port with a back-end authentication policy: its
/// `pins` (DER SubjectPublicKeyInfo) replace `--backend-public-key`'s.
pub fn client_config_pinned(
    settings: &BackendTls,
    policy_pins: Option<&[Vec<u8>]>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pins = match policy_pins {
        Some(pins) => pins.to_vec(),
        None => {
            let mut pins = Vec::with_capacity(settings.public_keys.len());
            for path in &settings.public_keys {
                pins.push(load_public_key(path)?);
            }
            pins
        }
    };
    let (chain, anchors) = match &settings.ca {
        None => (None, Vec::new()),
        Some(path) => {
            let (verifier, anchors) = chain_verifier(path, &provider)?;
            (Some(verifier), anchors)
        }
    };
    let verifier = BackendVerifier {
        pins,
        chain,
        anchors,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Other(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The chain verifier, and the CA file's certificates themselves.
fn chain_verifier(
    path: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<(Arc<WebPkiServerVerifier>, Vec<Vec<u8>>), TlsError> {
    let mut roots = RootCertStore::empty();
    let mut anchors = Vec::new();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Cert(path.into(), e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| TlsError::Cert(path.into(), e.to_string()))?;
        anchors.push(cert.as_ref().to_vec());
        roots
            .add(cert)
            .map_err(|e| TlsError::Cert(path.into(), e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::Cert(
            path.into(),
            "no CERTIFICATE in the file".into(),
        ));
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Cert(path.into(), e.to_string()))?;
    Ok((verifier, anchors))
}

/// A pinned key: a PEM `PUBLIC KEY`, or the key of the first `CERTIFICATE` in the file.
fn load_public_key(path: &Path) -> Result<Vec<u8>, TlsError> {
    let bad = |why: String| TlsError::Cert(path.into(), why);
    if let Ok(spki) = SubjectPublicKeyInfoDer::from_pem_file(path) {
        return Ok(spki.as_ref().to_vec());
    }
    let cert = CertificateDer::from_pem_file(path)
        .map_err(|e| bad(format!("neither a PUBLIC KEY nor a CERTIFICATE: {e}")))?;
    leaf_key(&cert).map_err(|e| bad(e.to_string()))
}

fn leaf_key(cert: &CertificateDer<'_>) -> Result<Vec<u8>, Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(parsed.subject_public_key_info().as_ref().to_vec())
}

#[derive(Debug)]
struct BackendVerifier {
    /// DER SubjectPublicKeyInfo of every pinned key; empty: any key.
    pins: Vec<Vec<u8>>,
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// The `--backend-ca` certificates: an instance presenting one of them as its leaf
    /// (a self-signed instance certificate) is trusted as it stands.
    anchors: Vec<Vec<u8>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for BackendVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if !self.pins.is_empty() {
            let key = leaf_key(end_entity)?;
            if !self.pins.contains(&key) {
                return Err(Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        let listed = self
            .anchors
            .iter()
            .any(|a| a.as_slice() == end_entity.as_ref());
        if let (Some(chain), false) = (&self.chain, listed) {
            // The chain is checked before the name, so a name error means the chain held.
            match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                Ok(_)
                | Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_accepts_any_certificate() {
        assert!(client_config(&BackendTls::default()).is_ok());
    }

    #[test]
    fn missing_files_are_named() {
        let settings = BackendTls {
            ca: Some("/nonexistent/ca.pem".into()),
            public_keys: Vec::new(),
        };
        let e = client_config(&settings).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let settings = BackendTls {
            ca: None,
            public_keys: vec!["/nonexistent/key.pem".into()],
        };
        let e = client_config(&settings).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/key.pem"), "{e}");
    }

    #[test]
    fn a_pinned_key_comes_from_a_certificate_or_a_public_key() {
        let dir = std::env::temp_dir().join(format!("clb-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["x".to_string()]).unwrap();
        let cert_path = dir.join("cert.pem");
        std::fs::write(&cert_path, generated.cert.pem()).unwrap();
        let key_path = dir.join("key.pem");
        std::fs::write(&key_path, generated.signing_key.public_key_pem()).unwrap();
        let from_cert = load_public_key(&cert_path).unwrap();
        let from_key = load_public_key(&key_path).unwrap();
        assert_eq!(from_cert, from_key);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
