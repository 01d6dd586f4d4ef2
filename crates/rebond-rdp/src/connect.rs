//! The RDP connection sequence, from TCP to the active stage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ironrdp_connector::credssp::CredsspSequence;
use ironrdp_connector::{ClientConnector, ConnectionResult, ConnectorError, ConnectorErrorKind, Credentials, DesktopSize};
use ironrdp_displaycontrol::client::DisplayControlClient;
use ironrdp_dvc::DrdynvcClient;
use ironrdp_pdu::gcc::{ConnectionType, KeyboardType};
use ironrdp_pdu::rdp::capability_sets::MajorPlatformType;
use ironrdp_pdu::rdp::client_info::{PerformanceFlags, TimezoneInfo};
use ironrdp_tokio::TokioFramed;
use rebond_wire::{ErrorCode, Stage};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use zeroize::Zeroizing;

use crate::trust::CertTrust;

/// Everything needed to open a session on a workstation.
pub struct ConnectRequest {
    pub host: String,
    pub port: u16,
    pub trust: CertTrust,
    pub username: String,
    pub password: Zeroizing<String>,
    pub domain: Option<String>,
    pub width: u16,
    pub height: u16,
    pub keyboard_layout: u32,
    pub connect_timeout: Duration,
    /// The sound channels the person's policy allows.
    pub sound: crate::SoundChannels,
}

/// Why a connection to the workstation failed, in terms the person understands.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("workstation unreachable: {0}")]
    Unreachable(String),
    #[error("workstation certificate not trusted: {0}")]
    CertificateUntrusted(String),
    #[error("workstation refused the credentials: {0}")]
    RefusedCredentials(String),
    #[error("RDP protocol error: {0}")]
    Protocol(String),
}

impl ConnectError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ConnectError::Unreachable(_) => ErrorCode::WorkstationUnreachable,
            ConnectError::CertificateUntrusted(_) => ErrorCode::WorkstationCertificateUntrusted,
            ConnectError::RefusedCredentials(_) => ErrorCode::WorkstationRefusedCredentials,
            ConnectError::Protocol(_) => ErrorCode::WorkstationProtocolError,
        }
    }
}

/// The framed TLS stream to the workstation.
pub type WorkstationFramed = TokioFramed<TlsStream<TcpStream>>;

/// A connected session, ready for the active stage.
pub struct Connected {
    pub framed: WorkstationFramed,
    pub result: ConnectionResult,
    /// Whether the workstation authenticated us before the session (NLA).
    pub nla: bool,
    /// The workstation's sound, when the speaker is allowed.
    pub speaker: Option<crate::SpeakerQueue>,
}

/// The connector configuration: every field explicit, nothing but display and input.
pub fn connector_config(req: &ConnectRequest) -> ironrdp_connector::Config {
    ironrdp_connector::Config {
        desktop_size: DesktopSize { width: req.width, height: req.height },
        monitor_layout: None,
        desktop_scale_factor: 0,
        desktop_physical_size: None,
        desktop_orientation: None,
        device_scale_factor: None,
        monitor_extended_layout: None,
        relative_mouse_input: false,
        enable_tls: true,
        enable_credssp: true,
        enable_standard_rdp_security: false,
        credentials: Credentials::UsernamePassword {
            username: req.username.clone(),
            password: req.password.as_str().to_owned(),
        },
        domain: req.domain.clone(),
        client_build: 0,
        client_name: "rebond".to_owned(),
        keyboard_type: KeyboardType::IBM_ENHANCED,
        keyboard_subtype: 0,
        keyboard_functional_keys_count: 12,
        keyboard_layout: req.keyboard_layout,
        connection_type: ConnectionType::Lan,
        ime_file_name: String::new(),
        bitmap: None,
        dig_product_id: String::new(),
        client_dir: String::new(),
        alternate_shell: String::new(),
        work_dir: String::new(),
        remote_application_mode: false,
        rail_support_level: ironrdp_pdu::rdp::capability_sets::RailSupportLevel::empty(),
        platform: MajorPlatformType::UNIX,
        hardware_id: None,
        request_data: None,
        autologon: true,
        // INVARIANT: no sound channel unless the person's policy allows it.
        enable_audio_playback: req.sound.speaker,
        enable_audio_capture: req.sound.microphone,
        performance_flags: PerformanceFlags::default(),
        license_cache: None,
        timezone_info: TimezoneInfo::default(),
        compression_type: None,
        enable_server_pointer: true,
        // The browser draws the pointer; it must not be painted into the framebuffer.
        pointer_software_rendering: false,
        multitransport_flags: None,
        support_dyn_vc_gfx_protocol: false,
    }
}

/// The client connector with exactly the channels the person's policy allows:
/// display control, and the sound channels in `sound`. Also returns where the
/// workstation's sound arrives, when the speaker is allowed.
pub fn client_connector(
    config: ironrdp_connector::Config,
    client_addr: SocketAddr,
    sound: crate::SoundChannels,
) -> (ClientConnector, Option<crate::SpeakerQueue>) {
    let mut drdynvc = DrdynvcClient::new().with_dynamic_channel(DisplayControlClient::new(|_| Ok(Vec::new())));
    if sound.microphone {
        drdynvc = drdynvc.with_dynamic_channel(crate::sound::MicrophoneChannel::new());
    }
    let mut connector = ClientConnector::new(config, client_addr).with_static_channel(drdynvc);
    let mut speaker = None;
    if sound.speaker {
        let (tap, queue) = crate::sound::SpeakerTap::new();
        connector = connector.with_static_channel(ironrdp_rdpsnd::client::Rdpsnd::new(Box::new(tap)));
        speaker = Some(queue);
    }
    (connector, speaker)
}

/// Opens the session. `progress` is told each stage as it starts.
pub async fn connect(req: &ConnectRequest, mut progress: impl FnMut(Stage)) -> Result<Connected, ConnectError> {
    progress(Stage::Reaching);
    let tcp = tokio::time::timeout(req.connect_timeout, TcpStream::connect((req.host.as_str(), req.port)))
        .await
        .map_err(|_| ConnectError::Unreachable(format!("no answer within {:?}", req.connect_timeout)))?
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let client_addr = tcp.local_addr().map_err(|e| ConnectError::Unreachable(e.to_string()))?;

    let step_timeout = req.connect_timeout.max(Duration::from_secs(10));
    let mut framed = TokioFramed::new(tcp);
    let (mut connector, speaker) = client_connector(connector_config(req), client_addr, req.sound);

    let should_upgrade = tokio::time::timeout(step_timeout, ironrdp_tokio::connect_begin(&mut framed, &mut connector))
        .await
        .map_err(|_| ConnectError::Unreachable("no RDP answer".into()))?
        .map_err(|e| negotiation_error(&e))?;

    progress(Stage::Securing);
    let tcp = framed.into_inner_no_leftover();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_config = req.trust.client_config(provider).map_err(|e| ConnectError::CertificateUntrusted(e.to_string()))?;
    let server_name = rustls::pki_types::ServerName::try_from(req.host.clone())
        .map_err(|e| ConnectError::Unreachable(format!("invalid workstation name: {e}")))?;
    let mut tls = tokio::time::timeout(
        step_timeout,
        tokio_rustls::TlsConnector::from(Arc::new(tls_config)).connect(server_name, tcp),
    )
    .await
    .map_err(|_| ConnectError::Unreachable("TLS handshake timed out".into()))?
    .map_err(tls_error)?;
    {
        use tokio::io::AsyncWriteExt as _;
        tls.flush().await.map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    }
    let server_public_key = server_public_key(&tls)?;

    let upgraded = ironrdp_tokio::mark_as_upgraded(should_upgrade, &mut connector);
    let mut framed = TokioFramed::new(tls);
    let mut network = RefuseNetwork;

    let nla = connector.should_perform_credssp();
    if nla {
        let selected_protocol = match connector.state {
            ironrdp_connector::ClientConnectorState::Credssp { selected_protocol, .. } => selected_protocol,
            _ => return Err(ConnectError::Protocol("unexpected state before CredSSP".into())),
        };
        let (sequence, ts_request) = CredsspSequence::init(
            connector.config.credentials.clone(),
            connector.config.domain.as_deref(),
            selected_protocol,
            req.host.clone().into(),
            server_public_key.clone(),
            None,
        )
        .map_err(|e| ConnectError::Protocol(e.report().to_string()))?;
        let mut buf = ironrdp_core::WriteBuf::new();
        tokio::time::timeout(
            step_timeout,
            ironrdp_tokio::perform_credssp(&mut framed, &mut network, &mut buf, sequence, ts_request),
        )
        .await
        .map_err(|_| ConnectError::RefusedCredentials("no answer during NLA".into()))?
        // A workstation that refuses NLA credentials closes the connection or sends
        // a CredSSP error: both mean the same thing to the person.
        .map_err(|e| ConnectError::RefusedCredentials(e.report().to_string()))?;
        connector.mark_credssp_as_done();
    }

    progress(Stage::SigningIn);
    let outcome = tokio::time::timeout(
        step_timeout,
        ironrdp_tokio::connect_finalize(
            upgraded,
            connector,
            &mut framed,
            &mut network,
            req.host.clone().into(),
            server_public_key,
            None,
        ),
    )
    .await
    .map_err(|_| ConnectError::Protocol("connection sequence timed out".into()))?
    .map_err(|e| finalize_error(&e))?;
    let result = outcome
        .into_connected()
        .map_err(|_| ConnectError::Protocol("the workstation redirected the connection; redirection is not supported".into()))?;
    progress(Stage::Ready);
    Ok(Connected { framed, result, nla, speaker })
}

fn server_public_key(tls: &TlsStream<TcpStream>) -> Result<Vec<u8>, ConnectError> {
    use x509_cert::der::Decode as _;
    let der = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| ConnectError::CertificateUntrusted("the workstation sent no certificate".into()))?;
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| ConnectError::CertificateUntrusted(e.to_string()))?;
    cert.tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| ConnectError::CertificateUntrusted("unaligned public key".into()))
}

fn tls_error(e: std::io::Error) -> ConnectError {
    let invalid_cert = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
    if invalid_cert {
        ConnectError::CertificateUntrusted(e.to_string())
    } else {
        ConnectError::Unreachable(format!("TLS: {e}"))
    }
}

fn negotiation_error(e: &ConnectorError) -> ConnectError {
    match e.kind() {
        ConnectorErrorKind::Negotiation(_) => ConnectError::Protocol(e.report().to_string()),
        _ => ConnectError::Unreachable(e.report().to_string()),
    }
}

fn finalize_error(e: &ConnectorError) -> ConnectError {
    match e.kind() {
        ConnectorErrorKind::AccessDenied | ConnectorErrorKind::Credssp(_) => {
            ConnectError::RefusedCredentials(e.report().to_string())
        }
        _ => ConnectError::Protocol(e.report().to_string()),
    }
}

/// Password NLA (NTLM) never calls the network; Kerberos would, and is not offered here.
struct RefuseNetwork;

impl ironrdp_tokio::NetworkClient for RefuseNetwork {
    async fn send(
        &mut self,
        _request: &ironrdp_connector::sspi::generator::NetworkRequest,
    ) -> ironrdp_connector::ConnectorResult<Vec<u8>> {
        Err(ironrdp_connector::general_err!("the gateway makes no network requests during NLA"))
    }
}

/// Fetches the certificate a workstation presents (DER), without authenticating:
/// for an administrator who wants to pin it (`rebond route fingerprint`).
pub async fn fetch_certificate(host: &str, port: u16, timeout: Duration) -> Result<Vec<u8>, ConnectError> {
    check_workstation(host, port, CertTrust::InsecureAcceptAny, timeout).await
}

/// Checks that a workstation answers RDP and that its certificate passes `trust`
/// (the TLS handshake, no logon); returns its certificate (DER).
pub async fn check_workstation(host: &str, port: u16, trust: CertTrust, timeout: Duration) -> Result<Vec<u8>, ConnectError> {
    let req = ConnectRequest {
        host: host.to_owned(),
        port,
        trust,
        username: String::new(),
        password: Zeroizing::new(String::new()),
        domain: None,
        width: 1024,
        height: 768,
        keyboard_layout: 0x0409,
        connect_timeout: timeout,
        sound: crate::SoundChannels::default(),
    };
    let tcp = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| ConnectError::Unreachable("no answer".into()))?
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    let client_addr = tcp.local_addr().map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    let mut framed = TokioFramed::new(tcp);
    let (mut connector, _) = client_connector(connector_config(&req), client_addr, req.sound);
    tokio::time::timeout(timeout, ironrdp_tokio::connect_begin(&mut framed, &mut connector))
        .await
        .map_err(|_| ConnectError::Unreachable("no RDP answer".into()))?
        .map_err(|e| negotiation_error(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = req.trust.client_config(provider).map_err(|e| ConnectError::CertificateUntrusted(e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| ConnectError::Unreachable(format!("invalid workstation name: {e}")))?;
    let tls = tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, framed.into_inner_no_leftover()),
    )
    .await
    .map_err(|_| ConnectError::Unreachable("TLS handshake timed out".into()))?
    .map_err(tls_error)?;
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| ConnectError::CertificateUntrusted("the workstation sent no certificate".into()))
}
