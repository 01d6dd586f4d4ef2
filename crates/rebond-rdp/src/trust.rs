//! How the gateway decides to trust a workstation's TLS certificate.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// One of three explicit choices; there is no implicit "accept anything".
#[derive(Clone, PartialEq, Eq)]
pub enum CertTrust {
    /// Certificates issued by these CAs (PEM), for the workstation's host name.
    Ca(Vec<Vec<u8>>),
    /// Exactly this certificate: SHA-256 of its DER encoding.
    Pinned([u8; 32]),
    /// No verification. Only by an explicit setting; logged as a warning at every connection.
    InsecureAcceptAny,
}

impl fmt::Debug for CertTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertTrust::Ca(roots) => write!(f, "Ca({} certificates)", roots.len()),
            CertTrust::Pinned(fp) => write!(f, "Pinned(sha256:{})", hex::encode(fp)),
            CertTrust::InsecureAcceptAny => f.write_str("InsecureAcceptAny"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("invalid fingerprint {0:?}: expected 64 hexadecimal digits (SHA-256), colons allowed")]
    Fingerprint(String),
    #[error("no certificate found in the CA file")]
    EmptyCa,
    #[error("invalid CA certificate: {0}")]
    BadCa(String),
}

impl CertTrust {
    /// Parses `sha256:AB:CD:…` or plain hex.
    pub fn pinned(text: &str) -> Result<Self, TrustError> {
        let hex_digits: String =
            text.trim().trim_start_matches("sha256:").chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(&hex_digits).map_err(|_| TrustError::Fingerprint(text.to_owned()))?;
        let fp: [u8; 32] = bytes.try_into().map_err(|_| TrustError::Fingerprint(text.to_owned()))?;
        Ok(CertTrust::Pinned(fp))
    }

    /// The TLS client configuration that trusts exactly this (also used by `rebond probe`
    /// to trust a gateway).
    pub fn client_config(&self, provider: Arc<CryptoProvider>) -> Result<rustls::ClientConfig, TrustError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let mut config = match self {
            CertTrust::Ca(pems) => {
                let mut roots = rustls::RootCertStore::empty();
                for pem in pems {
                    for der in pem_certificates(pem) {
                        roots.add(der).map_err(|e| TrustError::BadCa(e.to_string()))?;
                    }
                }
                if roots.is_empty() {
                    return Err(TrustError::EmptyCa);
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            CertTrust::Pinned(fp) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                    fingerprint: Some(*fp),
                    algorithms: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth(),
            CertTrust::InsecureAcceptAny => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                    fingerprint: None,
                    algorithms: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth(),
        };
        // RDP servers do not resume sessions; CredSSP binds to this handshake's key.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }
}

/// Extracts the DER certificates of a PEM bundle.
pub(crate) fn pem_certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect()
}

/// SHA-256 of a DER certificate, the form `rebond route set --pin` expects.
pub fn fingerprint_of_der(der: &[u8]) -> String {
    let d = Sha256::digest(der);
    d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[derive(Debug)]
struct PinnedVerifier {
    /// `None` accepts any certificate (explicitly configured insecure mode).
    fingerprint: Option<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.fingerprint {
            None => Ok(ServerCertVerified::assertion()),
            Some(expected) if Sha256::digest(end_entity.as_ref()).as_slice() == expected => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
