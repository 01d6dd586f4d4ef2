//! Reaching the gateway: TLS, the sign-in request.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use rebond_wire::ErrorCode;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::ProbeOptions;

pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url.trim().strip_prefix("https://").context("the gateway URL must start with https://")?;
        let authority = rest.split('/').next().unwrap_or("");
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().context("invalid port")?),
            _ => (authority, 443),
        };
        anyhow::ensure!(!host.is_empty(), "the gateway URL has no host");
        Ok(Self { host: host.trim_matches(['[', ']']).to_owned(), port })
    }

    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

pub fn client_config(insecure: bool, ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    use rebond_rdp::CertTrust;
    let trust = match (insecure, ca_file) {
        (true, _) => CertTrust::InsecureAcceptAny,
        (false, Some(path)) => CertTrust::Ca(vec![std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?]),
        (false, None) => anyhow::bail!("give --ca FILE to trust the gateway's certificate, or --insecure"),
    };
    let mut config = trust.client_config(Arc::new(rustls::crypto::ring::default_provider()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

pub async fn connect_tls(target: &Target, config: Arc<rustls::ClientConfig>) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .with_context(|| format!("cannot reach the gateway at {}", target.authority()))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(target.host.clone())?;
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.context("TLS with the gateway")
}

pub enum SignInOutcome {
    Accepted { cookie: String },
    Refused { code: ErrorCode, message: String },
}

pub async fn sign_in(target: &Target, config: Arc<rustls::ClientConfig>, opts: &ProbeOptions) -> anyhow::Result<SignInOutcome> {
    let stream = connect_tls(target, config).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let body = zeroize::Zeroizing::new(serde_json::to_vec(&serde_json::json!({
        "user": opts.user,
        "password": opts.password.as_str(),
        "language": opts.language,
        "width": opts.width,
        "height": opts.height,
    }))?);
    let req = hyper::Request::post("/api/sign-in")
        .header("Host", target.authority())
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(&body)))?;
    let res = sender.send_request(req).await.context("sign-in request")?;
    let status = res.status();
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next().filter(|kv| kv.starts_with("rebond_session=")).map(str::to_owned));
    let body = res.into_body().collect().await?.to_bytes();
    if status.is_success() {
        let cookie = cookie.context("the gateway accepted the sign-in but set no session cookie")?;
        return Ok(SignInOutcome::Accepted { cookie });
    }
    let v: serde_json::Value = serde_json::from_slice(&body).with_context(|| format!("sign-in refused with HTTP {status}"))?;
    let code = v["number"]
        .as_u64()
        .and_then(|n| ErrorCode::from_u16(n as u16))
        .with_context(|| format!("sign-in refused with HTTP {status} and no error code"))?;
    Ok(SignInOutcome::Refused { code, message: v["message"].as_str().unwrap_or_default().to_owned() })
}
