//! The worker's main loop.

use std::time::Duration;

use futures_util::FutureExt as _;
use rebond_display::pacing::FramePacer;
use rebond_display::{Encoder, EncoderSettings};
use rebond_policy::{UplinkFilter, Verdict};
use rebond_rdp::{CertTrust, ConnectRequest, Session, SessionEvent, SpeakerSound};
use ironrdp_tokio::FramedWrite as _;
use rebond_rdp::WorkstationFramed;
use rebond_wire::{Downlink, ErrorCode, FRAMES_IN_FLIGHT};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use zeroize::{Zeroize as _, Zeroizing};

use crate::link::{self, ToWorker};
use crate::sound::{Dropped, Microphone, Speaker};

/// Frames read from the workstation before the picture is flushed, at most.
const MAX_BATCH: usize = 256;

/// How to trust the workstation's certificate, as the gateway resolved it.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrustSpec {
    Ca { pem: String },
    Pinned { sha256: String },
    Insecure,
}

/// What the gateway tells a new worker. Never logged: it holds the password.
#[derive(Deserialize)]
pub struct StartRequest {
    pub host: String,
    pub port: u16,
    pub trust: TrustSpec,
    pub username: String,
    #[serde(deserialize_with = "zeroizing")]
    pub password: Zeroizing<String>,
    pub domain: Option<String>,
    pub width: u16,
    pub height: u16,
    pub keyboard_layout: u32,
    pub connect_timeout_ms: u64,
    #[serde(default)]
    pub lossless_only: bool,
    /// Send scrolls and moved windows as moves (see `rebond-display`).
    #[serde(default = "yes")]
    pub detect_moves: bool,
    /// Let the page keep tiles and draw them again (see `rebond-display`).
    #[serde(default = "yes")]
    pub tile_cache: bool,
    /// Wake-on-LAN for a workstation that may be asleep.
    #[serde(default)]
    pub wake: Option<WakeSpec>,
    #[serde(default)]
    pub wake_timeout_ms: u64,
    /// The person's policy lets the workstation's sound play in the browser.
    #[serde(default)]
    pub speaker: bool,
    /// The person's policy lets the browser's microphone reach the workstation.
    #[serde(default)]
    pub microphone: bool,
    /// Opus bitrate of the workstation's sound, bits per second.
    #[serde(default = "default_speaker_bitrate")]
    pub speaker_bitrate: u32,
}

fn yes() -> bool {
    true
}

fn default_speaker_bitrate() -> u32 {
    32_000
}

/// Where to send the magic packet (built by the gateway from the route's MAC address).
#[derive(Deserialize)]
pub struct WakeSpec {
    /// The magic packet, hexadecimal.
    pub packet: String,
    /// `IP:PORT`, usually the office subnet's broadcast address.
    pub address: String,
}

fn zeroizing<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

/// Runs one session. Returns when the session is over; the error code (if any)
/// has been sent to the gateway.
pub async fn run(input: impl AsyncRead + Unpin + Send + 'static, output: impl AsyncWrite + Unpin) -> Result<(), String> {
    let mut out = Out { w: tokio::io::BufWriter::new(output) };
    let (tx, mut rx) = mpsc::channel::<ToWorker>(256);
    tokio::spawn(read_control(input, tx));

    let start = match rx.recv().await {
        Some(ToWorker::Start(mut raw)) => {
            let parsed = serde_json::from_slice::<StartRequest>(&raw);
            raw.zeroize();
            parsed.map_err(|e| format!("invalid start request: {e}"))?
        }
        _ => return Err("the gateway did not start the session".into()),
    };
    let display = EncoderSettings {
        lossless_only: start.lossless_only,
        detect_moves: start.detect_moves,
        tile_cache: start.tile_cache,
        // Drawn at random for the session (std's hasher keys come from the system's
        // random source), so that no one can prepare two tiles with the same hash.
        cache_seed: {
            use std::hash::{BuildHasher as _, Hasher as _};
            std::collections::hash_map::RandomState::new().build_hasher().finish()
        },
        ..EncoderSettings::default()
    };
    let speaker_bitrate = start.speaker_bitrate;
    if let Some(wake) = &start.wake {
        let timeout = Duration::from_millis(start.wake_timeout_ms.clamp(5_000, 900_000));
        if !wake_if_asleep(&start.host, start.port, wake, timeout, &mut out).await {
            out.send(&Downlink::Error { code: ErrorCode::WorkstationDidNotWake }).await;
            return Ok(());
        }
    }
    #[cfg(debug_assertions)]
    let test_fault = test_fault(&start.username);
    let microphone = start.microphone;
    let req = match connect_request(start) {
        Ok(r) => r,
        Err(code) => {
            out.send(&Downlink::Error { code }).await;
            return Ok(());
        }
    };
    if req.trust == CertTrust::InsecureAcceptAny {
        warn!(host = %req.host, "workstation certificate is not verified (explicit insecure setting)");
    }

    // Progress goes out as it happens, so the page can show it.
    let (stage_tx, mut stage_rx) = mpsc::unbounded_channel();
    let connected = {
        let connecting = rebond_rdp::connect(&req, |stage| {
            let _ = stage_tx.send(stage);
        });
        tokio::pin!(connecting);
        loop {
            tokio::select! {
                res = &mut connecting => break res,
                Some(stage) = stage_rx.recv() => out.send(&Downlink::Status { stage }).await,
            }
        }
    };
    while let Ok(stage) = stage_rx.try_recv() {
        out.send(&Downlink::Status { stage }).await;
    }
    drop(req); // the password is zeroized here; NLA and logon are done
    let mut connected = match connected {
        Ok(c) => c,
        Err(e) => {
            info!(code = %e.code(), error = %e, "connection to the workstation failed");
            out.send(&Downlink::Error { code: e.code() }).await;
            return Ok(());
        }
    };
    info!(nla = connected.nla, "connected to the workstation");
    #[cfg(target_os = "linux")]
    if let Err(e) = crate::sandbox::lock_down() {
        tracing::error!(error = %e, "cannot confine the worker: the session is refused");
        out.send(&Downlink::Error { code: ErrorCode::WorkerFailed }).await;
        return Ok(());
    }
    #[cfg(debug_assertions)]
    if let Some(action) = test_fault {
        warn!(action = action.name(), "test fault: trying a forbidden action");
        let result = action.attempt();
        warn!(?result, "test fault: the forbidden action was not stopped");
    }

    let sound = match Sound::new(connected.speaker.is_some(), microphone, speaker_bitrate) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the sound codecs");
            out.send(&Downlink::Error { code: ErrorCode::WorkerFailed }).await;
            return Ok(());
        }
    };
    let mut w = Worker::new(Session::new(connected.result, connected.speaker), connected.nla, display, sound);
    let code = w.serve(&mut connected.framed, &mut rx, &mut out).await;
    if let Some(code) = code {
        out.send(&Downlink::Error { code }).await;
    }
    Ok(())
}

/// Whether the workstation answers on its RDP port within `within`.
async fn answers(host: &str, port: u16, within: Duration) -> bool {
    matches!(tokio::time::timeout(within, tokio::net::TcpStream::connect((host, port))).await, Ok(Ok(_)))
}

/// If the workstation does not answer, wakes it (a magic packet every few seconds) and
/// waits for its RDP port, telling the page. False if it did not wake up in time.
async fn wake_if_asleep<W: AsyncWrite + Unpin>(host: &str, port: u16, wake: &WakeSpec, timeout: Duration, out: &mut Out<W>) -> bool {
    if answers(host, port, Duration::from_millis(1500)).await {
        return true;
    }
    let (Ok(packet), Ok(address)) = (hex::decode(&wake.packet), wake.address.parse::<std::net::SocketAddr>()) else {
        warn!("invalid wake-on-LAN settings from the gateway");
        return false;
    };
    out.send(&Downlink::Status { stage: rebond_wire::Stage::Waking }).await;
    let started = tokio::time::Instant::now();
    info!(%address, "workstation asleep: sending wake-on-LAN");
    while started.elapsed() < timeout {
        match send_magic_packet(&packet, address).await {
            Ok(()) => {}
            Err(e) => warn!(%address, error = %e, "cannot send the wake-on-LAN packet"),
        }
        for _ in 0..3 {
            if answers(host, port, Duration::from_secs(1)).await {
                info!(seconds = started.elapsed().as_secs_f32(), "workstation woke up");
                return true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    info!(seconds = timeout.as_secs(), "workstation did not wake up");
    false
}

async fn send_magic_packet(packet: &[u8], address: std::net::SocketAddr) -> std::io::Result<()> {
    let bind = if address.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    socket.set_broadcast(true)?;
    socket.send_to(packet, address).await.map(drop)
}

#[cfg(debug_assertions)]
fn test_fault(user: &str) -> Option<crate::sandbox::ForbiddenAction> {
    let spec = std::env::var(crate::TEST_FAULT_VAR).ok()?;
    let (who, action) = spec.split_once(':')?;
    (who == user).then(|| crate::sandbox::ForbiddenAction::parse(action)).flatten()
}

fn connect_request(s: StartRequest) -> Result<ConnectRequest, ErrorCode> {
    let trust = match s.trust {
        TrustSpec::Ca { pem } => CertTrust::Ca(vec![pem.into_bytes()]),
        TrustSpec::Pinned { sha256 } => CertTrust::pinned(&sha256).map_err(|e| {
            warn!(error = %e, "route has an invalid certificate fingerprint");
            ErrorCode::WorkstationCertificateUntrusted
        })?,
        TrustSpec::Insecure => CertTrust::InsecureAcceptAny,
    };
    Ok(ConnectRequest {
        host: s.host,
        port: s.port,
        trust,
        username: s.username,
        password: s.password,
        domain: s.domain,
        width: s.width.clamp(rebond_policy::MIN_SIDE, rebond_policy::MAX_SIDE),
        height: s.height.clamp(rebond_policy::MIN_SIDE, rebond_policy::MAX_SIDE),
        keyboard_layout: s.keyboard_layout,
        connect_timeout: Duration::from_millis(s.connect_timeout_ms.clamp(500, 120_000)),
        sound: rebond_rdp::SoundChannels { speaker: s.speaker, microphone: s.microphone },
    })
}

async fn read_control(mut input: impl AsyncRead + Unpin, tx: mpsc::Sender<ToWorker>) {
    // The start request (it holds the password) is read on its own, into memory the
    // worker wipes; what follows is buffered, a message's length and body in one read.
    let first = link::read_to_worker(&mut input).await;
    let mut input = tokio::io::BufReader::new(input);
    let mut next = Some(first);
    loop {
        let msg = match next.take() {
            Some(m) => m,
            None => link::read_to_worker(&mut input).await,
        };
        match msg {
            Ok(msg) => {
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                debug!(error = %e, "control link ended");
                // The gateway is gone: the session ends with it.
                let _ = tx.send(ToWorker::Stop).await;
                return;
            }
        }
    }
}

struct Out<W> {
    w: tokio::io::BufWriter<W>,
}

impl<W: AsyncWrite + Unpin> Out<W> {
    async fn queue(&mut self, msg: &Downlink) -> bool {
        link::write_from_worker(&mut self.w, &msg.encode()).await.is_ok()
    }

    async fn send(&mut self, msg: &Downlink) {
        if self.queue(msg).await {
            let _ = self.w.flush().await;
        }
    }
}

struct Worker {
    session: Session,
    encoder: Encoder,
    filter: UplinkFilter,
    attached: bool,
    next_seq: u32,
    acked: u32,
    pointer: Option<Downlink>,
    /// Whether the workstation has drawn anything yet (TLS logons that fail end before).
    drawn: bool,
    nla: bool,
    sound: Sound,
    pacer: FramePacer,
    /// The clock the pacer reads.
    started: tokio::time::Instant,
    /// When a frame held back by the pacer may go.
    held_until: Option<tokio::time::Instant>,
}

/// The session's sound codecs, as the policy allows.
struct Sound {
    speaker: Option<Speaker>,
    microphone: Option<Microphone>,
    /// The clock microphone pacing reads.
    started: std::time::Instant,
    /// An undecodable microphone packet is logged once per session.
    warned: bool,
}

impl Sound {
    fn new(speaker: bool, microphone: bool, speaker_bitrate: u32) -> Result<Self, String> {
        Ok(Self {
            speaker: speaker.then(|| Speaker::new(speaker_bitrate)).transpose()?,
            microphone: microphone.then(Microphone::new).transpose()?,
            started: std::time::Instant::now(),
            warned: false,
        })
    }
}

impl Worker {
    fn new(session: Session, nla: bool, display: EncoderSettings, sound: Sound) -> Self {
        let (w, h) = (session.width(), session.height());
        Self {
            encoder: Encoder::new(w, h, display),
            filter: UplinkFilter::new(w, h).allow_microphone(sound.microphone.is_some()),
            session,
            attached: false,
            next_seq: 1,
            acked: 0,
            pointer: None,
            drawn: false,
            nla,
            sound,
            pacer: FramePacer::default(),
            started: tokio::time::Instant::now(),
            held_until: None,
        }
    }

    /// Runs until the session ends; returns the reason to tell the page, if any.
    async fn serve<W>(
        &mut self,
        framed: &mut WorkstationFramed,
        rx: &mut mpsc::Receiver<ToWorker>,
        out: &mut Out<W>,
    ) -> Option<ErrorCode>
    where
        W: AsyncWrite + Unpin,
    {
        loop {
            tokio::select! {
                pdu = framed.read_pdu() => {
                    let mut next = Some(pdu);
                    let mut n = 0;
                    // Take every frame already there before drawing: that is the coalescing.
                    while let Some(pdu) = next.take() {
                        let (action, frame) = match pdu {
                            Ok(p) => p,
                            Err(e) => return Some(self.lost_connection(&e)),
                        };
                        match self.on_frame(action, &frame, framed, out).await {
                            Ok(None) => {}
                            Ok(Some(code)) => return Some(code),
                            Err(e) => {
                                warn!(error = %e, "workstation sent something we cannot process");
                                return Some(ErrorCode::WorkstationProtocolError);
                            }
                        }
                        n += 1;
                        if n < MAX_BATCH {
                            next = framed.read_pdu().now_or_never();
                        }
                    }
                }
                msg = rx.recv() => match msg {
                    None | Some(ToWorker::Stop) => {
                        for f in self.session.shutdown() {
                            let _ = framed.write_all(&f).await;
                        }
                        return None;
                    }
                    Some(ToWorker::Attach) => {
                        self.attached = true;
                        if let Ok(frames) = self.session.synchronize() {
                            for f in frames {
                                let _ = framed.write_all(&f).await;
                            }
                        }
                        self.next_seq = 1;
                        self.acked = 0;
                        self.encoder.invalidate();
                        out.queue(&Downlink::DesktopSize { width: self.encoder.width(), height: self.encoder.height() }).await;
                        if let Some(p) = &self.pointer {
                            out.queue(p).await;
                        }
                    }
                    Some(ToWorker::Detach) => {
                        self.attached = false;
                        if let Ok(frames) = self.session.release_all() {
                            for f in frames {
                                let _ = framed.write_all(&f).await;
                            }
                        }
                    }
                    Some(ToWorker::Uplink(bytes)) => {
                        if let Err(code) = self.on_uplink(&bytes, framed).await {
                            return Some(code);
                        }
                    }
                    Some(ToWorker::Start(_)) => {
                        warn!("second start request ignored");
                    }
                },
                _ = tokio::time::sleep_until(self.held_until.unwrap_or_else(tokio::time::Instant::now)), if self.held_until.is_some() => {
                    self.held_until = None;
                }
            }
            if self.flush(out).await.is_err() {
                return None; // the gateway is gone
            }
        }
    }

    fn lost_connection(&self, e: &std::io::Error) -> ErrorCode {
        info!(error = %e, drawn = self.drawn, "workstation connection closed");
        if !self.drawn && !self.nla {
            // With TLS logon the workstation checks the password after the
            // connection sequence and closes at once when it is wrong.
            ErrorCode::WorkstationRefusedCredentials
        } else {
            ErrorCode::WorkstationUnreachable
        }
    }

    async fn on_frame<W>(
        &mut self,
        action: ironrdp_pdu::Action,
        frame: &[u8],
        framed: &mut WorkstationFramed,
        out: &mut Out<W>,
    ) -> Result<Option<ErrorCode>, String>
    where
        W: AsyncWrite + Unpin,
    {
        let processed = self.session.process(action, frame)?;
        for f in processed.responses {
            framed.write_all(&f).await.map_err(|e| e.to_string())?;
        }
        for event in processed.events {
            match event {
                SessionEvent::Damage { left, top, right, bottom } => {
                    self.drawn = true;
                    self.encoder.damage(left, top, right, bottom);
                }
                SessionEvent::DesktopResized { width, height } => {
                    self.encoder.resize(width, height);
                    self.filter.set_desktop_size(width, height);
                    if self.attached {
                        out.queue(&Downlink::DesktopSize { width, height }).await;
                    }
                }
                SessionEvent::PointerShape { width, height, hotspot_x, hotspot_y, rgba } => {
                    let png = rebond_display::encode_rgba_png(&rgba, width, height);
                    let msg = Downlink::PointerShape { hotspot_x, hotspot_y, png };
                    if self.attached {
                        out.queue(&msg).await;
                    }
                    self.pointer = Some(msg);
                }
                SessionEvent::PointerHidden | SessionEvent::PointerDefault => {
                    let msg = if event == SessionEvent::PointerHidden { Downlink::PointerHidden } else { Downlink::PointerDefault };
                    if self.attached {
                        out.queue(&msg).await;
                    }
                    self.pointer = Some(msg);
                }
                SessionEvent::Ended { code, reason } => {
                    info!(%code, %reason, "the workstation ended the session");
                    return Ok(Some(code));
                }
                SessionEvent::Speaker(sound) => {
                    let Some(speaker) = self.sound.speaker.as_mut() else { continue };
                    let packets = match sound {
                        // No page, no sound: the next packet starts a new stream.
                        SpeakerSound::Samples { .. } if !self.attached => speaker.close(),
                        SpeakerSound::Samples { rate, samples } => speaker.push(rate, &samples),
                        SpeakerSound::Closed => speaker.close(),
                    };
                    if self.attached {
                        for p in &packets {
                            out.queue(p).await;
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    async fn on_uplink(&mut self, bytes: &[u8], framed: &mut WorkstationFramed) -> Result<(), ErrorCode> {
        let frames = match self.filter.binary(bytes) {
            Verdict::Input(inputs) => self.session.input(&inputs),
            Verdict::Resize { width, height } => {
                if (width, height) == (self.session.width(), self.session.height()) {
                    return Ok(());
                }
                match self.session.resize(width, height) {
                    Some(r) => r.map(|f| vec![f]),
                    None => return Ok(()), // no display control: the page scales
                }
            }
            Verdict::FrameAck { seq } => {
                if seq < self.next_seq {
                    self.acked = self.acked.max(seq);
                }
                return Ok(());
            }
            Verdict::Keepalive => return Ok(()),
            Verdict::Microphone { packet } => {
                let now_ms = self.sound.started.elapsed().as_millis() as u64;
                let Some(mic) = self.sound.microphone.as_mut() else { return Ok(()) };
                match mic.decode(&packet, now_ms) {
                    Ok(pcm) => self.session.microphone(pcm),
                    Err(Dropped::TooFast) => return Ok(()),
                    Err(Dropped::Undecodable(e)) => {
                        if !std::mem::replace(&mut self.sound.warned, true) {
                            warn!(error = %e, "the page sent microphone sound that is not Opus; such packets are dropped");
                        }
                        return Ok(());
                    }
                }
            }
            Verdict::Violation(v) => {
                warn!(violation = %v, "uplink violation reached the worker");
                return Err(ErrorCode::ForbiddenMessage);
            }
        };
        let frames = frames.map_err(|e| {
            warn!(error = %e, "cannot encode input");
            ErrorCode::WorkerFailed
        })?;
        for f in frames {
            framed.write_all(&f).await.map_err(|_| ErrorCode::WorkstationUnreachable)?;
        }
        Ok(())
    }

    /// Sends a frame if the page has room for one.
    async fn flush<W: AsyncWrite + Unpin>(&mut self, out: &mut Out<W>) -> Result<(), ()> {
        // Nothing is sent before the workstation has drawn: a blank picture would only
        // cost bytes and make the first frame look earlier than the desktop.
        if self.attached
            && self.drawn
            && self.held_until.is_none()
            && self.encoder.has_damage()
            // Beyond this, damage is coalesced in the encoder until the page catches up.
            && self.next_seq - 1 - self.acked < FRAMES_IN_FLIGHT
        {
            let now_ms = self.started.elapsed().as_millis() as u64;
            if let Some(at) = self.pacer.not_before(now_ms) {
                self.held_until = Some(self.started + Duration::from_millis(at));
                return out.w.flush().await.map_err(|_| ());
            }
            let encoded = self.encoder.encode(self.session.pixels(), now_ms);
            if !encoded.is_empty() {
                self.pacer.sent(now_ms);
                // What the page keeps of its picture before the frame covers it, moves,
                // tiles drawn from the page's cache, images: the order of `rebond-display`.
                if !encoded.cache_stores.is_empty() && !out.queue(&Downlink::CacheStores { rects: encoded.cache_stores }).await {
                    return Err(());
                }
                if !encoded.moves.is_empty() && !out.queue(&Downlink::Moves { moves: encoded.moves }).await {
                    return Err(());
                }
                if !encoded.cache_draws.is_empty() && !out.queue(&Downlink::CacheDraws { rects: encoded.cache_draws }).await {
                    return Err(());
                }
                for r in encoded.regions {
                    let tile = Downlink::Tile { x: r.x, y: r.y, width: r.width, height: r.height, codec: r.codec, data: r.data };
                    if !out.queue(&tile).await {
                        return Err(());
                    }
                }
                out.queue(&Downlink::FrameEnd { seq: self.next_seq }).await;
                self.next_seq += 1;
            }
        }
        out.w.flush().await.map_err(|_| ())
    }
}
