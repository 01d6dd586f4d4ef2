//! The gateway's HTTPS certificate: the configured one, or a self-signed one kept
//! in the data folder.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// Loads or creates the certificate, and builds the server configuration
/// (TLS 1.2 and 1.3 only, ring's modern suites).
pub fn server_config(files: Option<&TlsFiles>, data_dir: &Path) -> anyhow::Result<(Arc<rustls::ServerConfig>, String)> {
    let (cert_path, key_path) = match files {
        Some(f) => (f.certificate.clone(), f.private_key.clone()),
        None => {
            let dir = data_dir.join("tls");
            let cert = dir.join("gateway.crt");
            let key = dir.join("gateway.key");
            if !cert.exists() || !key.exists() {
                generate_self_signed(&dir, &cert, &key)?;
            }
            (cert, key)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("cannot read the certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid certificate {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("cannot read the private key {}", key_path.display()))?;
    let fingerprint = certs.first().map(|c| sha256_hex(c.as_ref())).unwrap_or_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate does not match the private key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), fingerprint))
}

fn generate_self_signed(dir: &Path, cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_owned());
        }
    }
    let certified = rcgen::generate_simple_self_signed(names).context("cannot generate a certificate")?;
    std::fs::write(cert_path, certified.cert.pem()).with_context(|| format!("cannot write {}", cert_path.display()))?;
    // The key is readable by the gateway's user only.
    let mut f = std::fs::OpenOptions::new();
    f.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
    f.open(key_path)
        .and_then(|mut file| file.write_all(certified.signing_key.serialize_pem().as_bytes()))
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    tracing::info!(certificate = %cert_path.display(), "generated a self-signed HTTPS certificate");
    Ok(())
}

pub fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}
