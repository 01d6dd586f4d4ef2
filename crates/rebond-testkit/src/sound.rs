//! A real workstation that plays and records sound, for end-to-end tests of audio
//! through the gateway: FreeRDP's shadow server negotiates the sound channels but
//! carries no sound, and xrdp's sound module is not packaged.
//!
//! It is an `ironrdp-server` (patched: `vendor/ironrdp-server`) on 127.0.0.1, in a
//! thread of its own, with:
//! - TLS with a certificate from the test CA, and one user name and password, checked
//!   from the Client Info PDU (plain TLS security, as the worker connects to FreeRDP's
//!   shadow server);
//! - a 1280x800 plain desktop whose square changes colour at every key press;
//! - sound out (`rdpsnd`): 16-bit PCM, a beep pattern ([`SoundOptions`]) in real time,
//!   20 ms per wave, with the wall-clock time of every beep onset ([`SoundWorkstation::played_onsets`]);
//! - sound in (`AUDIO_INPUT`, [MS-RDPEAI], through `rebond-audio`'s sans-IO server):
//!   everything the client sends is kept ([`SoundWorkstation::recording`]).
//!
//! Stopped when dropped.

use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroUsize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ironrdp_core::impl_as_any;
use ironrdp_dvc::{DvcMessage, DvcProcessor, DvcServerProcessor};
use ironrdp_pdu::PduResult;
use ironrdp_rdpsnd::pdu::{AudioFormat, WaveFormat};
use ironrdp_rdpsnd::server::{NegotiatedFormat, RdpsndError};
use ironrdp_server::{
    BitmapUpdate, CredentialDecision, CredentialValidationError, CredentialValidator, Credentials, DesktopSize,
    DisplayUpdate, KeyboardEvent, MouseEvent, PixelFormat, RdpServer, RdpServerDisplay, RdpServerDisplayUpdates,
    RdpServerInputHandler, RdpsndServerHandler, RdpsndServerMessage, ServerEvent, ServerEventSender, SoundServerFactory,
};
use rebond_audio::audin::{AudinServer, CHANNEL_NAME as AUDIO_INPUT};
use rebond_audio::format::AudioFormat as AudinFormat;
use tokio::sync::{mpsc, watch};

use rebond_rdp::sound::dvc_messages;

use crate::pki::TestCa;
use crate::tone::Beeps;

pub const WIDTH: u16 = 1280;
pub const HEIGHT: u16 = 800;
/// The desktop's colour, and the square's two colours (RGB).
pub const BACKGROUND: [u8; 3] = [0x1f, 0x4e, 0x79];
pub const SQUARE_OFF: [u8; 3] = [0xe0, 0x40, 0x30];
pub const SQUARE_ON: [u8; 3] = [0x30, 0xc0, 0x50];
/// Where the square is: left, top, side.
pub const SQUARE: (u16, u16, u16) = (64, 64, 96);

/// The beep pattern the workstation plays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoundOptions {
    pub tone_hz: f32,
    /// Peak level of the beeps.
    pub level_dbfs: f32,
    /// Beep length, then silence length.
    pub beep_ms: u32,
    pub gap_ms: u32,
}

impl Default for SoundOptions {
    fn default() -> Self {
        Self { tone_hz: 660.0, level_dbfs: -12.0, beep_ms: 200, gap_ms: 800 }
    }
}

/// How to start a [`SoundWorkstation`].
#[derive(Debug, Clone)]
pub struct SoundWorkstationOptions {
    /// Certificate and key (PEM) the workstation presents.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The only account it accepts (the domain is not checked).
    pub username: String,
    pub password: String,
    pub sound: SoundOptions,
}

impl SoundWorkstationOptions {
    /// A certificate for `localhost` and 127.0.0.1 issued by `ca`, and the default beeps.
    pub fn new(ca: &TestCa, username: &str, password: &str) -> anyhow::Result<Self> {
        let (cert_file, key_file) =
            ca.issue(&format!("sound-workstation-{}", crate::unique()), &["DNS:localhost", "IP:127.0.0.1"])?;
        Ok(Self {
            cert_file,
            key_file,
            username: username.to_owned(),
            password: password.to_owned(),
            sound: SoundOptions::default(),
        })
    }
}

/// What arrived on the workstation's microphone (`AUDIO_INPUT`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recording {
    /// Sample rate of `samples` (0 before anything arrived).
    pub rate: u32,
    /// Mono samples, in arrival order.
    pub samples: Vec<i16>,
    /// For each Data PDU: when it arrived (unix ms) and `samples.len()` after it.
    pub arrivals: Vec<(f64, usize)>,
}

impl Recording {
    /// When the sample at `index` arrived (unix ms): the arrival of the PDU that carried it.
    pub fn arrival_of(&self, index: usize) -> Option<f64> {
        self.arrivals.iter().find(|(_, end)| *end > index).map(|(t, _)| *t)
    }
}

/// Wall-clock time, unix milliseconds.
pub fn unix_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0
}

/// The running workstation. Stopped when dropped.
pub struct SoundWorkstation {
    pub host: String,
    pub port: u16,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    onsets: Mutex<Vec<f64>>,
    recording: Mutex<Recording>,
    microphone_format: Mutex<Option<(u32, u16)>>,
    speaker_format: Mutex<Option<(u32, u16)>>,
    display: Mutex<DisplayState>,
    keys: AtomicU64,
    waves: AtomicU64,
}

#[derive(Default)]
struct DisplayState {
    square_on: bool,
    updates: Option<mpsc::UnboundedSender<DisplayUpdate>>,
}

/// What the speaker plays: the generation counts negotiations (a new connection
/// restarts the pattern), and the format is (rate, channels) while one is chosen.
type SpeakerState = (u64, Option<(u32, u16)>);

impl SoundWorkstation {
    pub fn start(options: SoundWorkstationOptions) -> anyhow::Result<Self> {
        let port = crate::free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let acceptor = tls_acceptor(&options)?;
        let shared = Arc::new(Shared::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name(format!("sound-workstation-{port}")).spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let shared = thread_shared;
                let (speaker_tx, speaker_rx) = watch::channel::<SpeakerState>((0, None));
                let audin_shared = Arc::clone(&shared);
                let mut server = RdpServer::builder()
                    .with_addr(addr)
                    .with_tls(acceptor)
                    .with_input_handler(Input { shared: Arc::clone(&shared) })
                    .with_display_handler(Display { shared: Arc::clone(&shared) })
                    .with_sound_factory(Some(Box::new(Speaker { state: Arc::new(speaker_tx) })))
                    .with_credential_validator(Some(Arc::new(OneAccount {
                        username: options.username.clone(),
                        password: options.password.clone(),
                    })))
                    .with_dvc_factory(Box::new(move || Box::new(Microphone::new(Arc::clone(&audin_shared)))))
                    .build();
                let events = server.event_sender().clone();
                tokio::spawn(play(events.clone(), speaker_rx, options.sound, Arc::clone(&shared)));
                // The server answers this once it listens.
                tokio::spawn(async move {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let _ = events.send(ServerEvent::GetLocalAddr(tx));
                    let _ = ready_tx.send(match rx.await {
                        Ok(Some(_)) => Ok(()),
                        _ => Err(anyhow::anyhow!("the sound workstation did not start listening")),
                    });
                });
                tokio::select! {
                    result = server.run() => {
                        if let Err(e) = result {
                            eprintln!("sound workstation on port {port} stopped: {e:#}");
                        }
                    }
                    _ = stop_rx => {}
                }
            });
        })?;
        let started = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow::anyhow!("the sound workstation did not start within 10 s"))?;
        let ws = Self { host: "127.0.0.1".to_owned(), port, shared, stop: Some(stop_tx), thread: Some(thread) };
        started?;
        Ok(ws)
    }

    /// When each beep started playing (unix ms): the time its wave was handed to the
    /// server plus the onset's offset in that wave.
    pub fn played_onsets(&self) -> Vec<f64> {
        self.shared.onsets.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Everything the microphone channel received so far.
    pub fn recording(&self) -> Recording {
        self.shared.recording.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Forgets what was recorded and played so far (the next beeps and samples count).
    pub fn clear(&self) {
        if let Ok(mut r) = self.shared.recording.lock() {
            let rate = r.rate;
            *r = Recording { rate, ..Recording::default() };
        }
        if let Ok(mut o) = self.shared.onsets.lock() {
            o.clear();
        }
    }

    /// The microphone format the client sends in (rate, channels), once open.
    pub fn microphone_format(&self) -> Option<(u32, u16)> {
        self.shared.microphone_format.lock().ok().and_then(|f| *f)
    }

    /// The speaker format (rate, channels) last negotiated; `None` if the client never
    /// opened the sound channel.
    pub fn speaker_format(&self) -> Option<(u32, u16)> {
        self.shared.speaker_format.lock().ok().and_then(|f| *f)
    }

    /// `rdp://127.0.0.1:PORT`, for a route.
    pub fn url(&self) -> String {
        format!("rdp://{}:{}", self.host, self.port)
    }

    /// Waves handed to the server so far.
    pub fn waves_sent(&self) -> u64 {
        self.shared.waves.load(Ordering::Relaxed)
    }

    /// Key presses received so far.
    pub fn key_presses(&self) -> u64 {
        self.shared.keys.load(Ordering::Relaxed)
    }
}

impl Drop for SoundWorkstation {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn tls_acceptor(options: &SoundWorkstationOptions) -> anyhow::Result<ironrdp_server::tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&options.cert_file)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&options.key_file)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(ironrdp_server::tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

// ---- credentials ----

struct OneAccount {
    username: String,
    password: String,
}

#[async_trait::async_trait]
impl CredentialValidator for OneAccount {
    async fn validate(&self, c: &Credentials) -> Result<CredentialDecision, CredentialValidationError> {
        Ok(if c.username == self.username && c.password == self.password {
            CredentialDecision::Accept
        } else {
            CredentialDecision::Reject
        })
    }
}

// ---- display and input ----

struct Display {
    shared: Arc<Shared>,
}

struct Updates {
    rx: mpsc::UnboundedReceiver<DisplayUpdate>,
}

#[async_trait::async_trait]
impl RdpServerDisplayUpdates for Updates {
    async fn next_update(&mut self) -> anyhow::Result<Option<DisplayUpdate>> {
        Ok(self.rx.recv().await)
    }
}

#[async_trait::async_trait]
impl RdpServerDisplay for Display {
    async fn size(&mut self) -> DesktopSize {
        DesktopSize { width: WIDTH, height: HEIGHT }
    }

    async fn updates(&mut self) -> anyhow::Result<Box<dyn RdpServerDisplayUpdates>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut display = self.shared.display.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let _ = tx.send(DisplayUpdate::Bitmap(desktop(display.square_on)));
        display.updates = Some(tx);
        Ok(Box::new(Updates { rx }))
    }
}

/// BGRA pixels of a `width` x `height` rectangle of one colour.
fn fill(width: u16, height: u16, rgb: [u8; 3]) -> Vec<u8> {
    [rgb[2], rgb[1], rgb[0], 0xff].repeat(usize::from(width) * usize::from(height))
}

fn bitmap(x: u16, y: u16, width: u16, height: u16, data: Vec<u8>) -> BitmapUpdate {
    BitmapUpdate {
        x,
        y,
        width: NonZeroU16::new(width).expect("non-empty"),
        height: NonZeroU16::new(height).expect("non-empty"),
        format: PixelFormat::BgrA32,
        data: data.into(),
        stride: NonZeroUsize::new(usize::from(width) * 4).expect("non-empty"),
    }
}

/// The whole desktop: the background and the square.
fn desktop(square_on: bool) -> BitmapUpdate {
    let mut data = fill(WIDTH, HEIGHT, BACKGROUND);
    let (left, top, side) = SQUARE;
    let colour = if square_on { SQUARE_ON } else { SQUARE_OFF };
    let px = [colour[2], colour[1], colour[0], 0xff];
    for y in top..top + side {
        for x in left..left + side {
            let i = (usize::from(y) * usize::from(WIDTH) + usize::from(x)) * 4;
            data[i..i + 4].copy_from_slice(&px);
        }
    }
    bitmap(0, 0, WIDTH, HEIGHT, data)
}

struct Input {
    shared: Arc<Shared>,
}

impl RdpServerInputHandler for Input {
    fn keyboard(&mut self, event: KeyboardEvent) {
        if !matches!(event, KeyboardEvent::Pressed { .. } | KeyboardEvent::UnicodePressed(_)) {
            return;
        }
        self.shared.keys.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut display) = self.shared.display.lock() {
            display.square_on = !display.square_on;
            let (left, top, side) = SQUARE;
            let colour = if display.square_on { SQUARE_ON } else { SQUARE_OFF };
            let update = bitmap(left, top, side, side, fill(side, side, colour));
            if let Some(tx) = &display.updates {
                let _ = tx.send(DisplayUpdate::Bitmap(update));
            }
        }
    }

    fn mouse(&mut self, _event: MouseEvent) {}
}

// ---- sound out ----

fn pcm(rate: u32, channels: u16) -> AudioFormat {
    AudioFormat {
        format: WaveFormat::PCM,
        n_channels: channels,
        n_samples_per_sec: rate,
        n_avg_bytes_per_sec: rate * u32::from(channels) * 2,
        n_block_align: channels * 2,
        bits_per_sample: 16,
        data: None,
    }
}

struct Speaker {
    state: Arc<watch::Sender<SpeakerState>>,
}

impl ServerEventSender for Speaker {
    // The player gets the server's sender when it is spawned.
    fn set_sender(&mut self, _sender: mpsc::UnboundedSender<ServerEvent>) {}
}

impl SoundServerFactory for Speaker {
    fn build_backend(&self) -> Box<dyn RdpsndServerHandler> {
        Box::new(SpeakerBackend {
            formats: vec![pcm(48_000, 2), pcm(44_100, 2), pcm(48_000, 1)],
            state: Arc::clone(&self.state),
        })
    }
}

struct SpeakerBackend {
    formats: Vec<AudioFormat>,
    state: Arc<watch::Sender<SpeakerState>>,
}

impl std::fmt::Debug for SpeakerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeakerBackend").field("formats", &self.formats.len()).finish()
    }
}

impl RdpsndServerHandler for SpeakerBackend {
    fn get_formats(&self) -> &[AudioFormat] {
        &self.formats
    }

    /// The first common one, in the order offered.
    fn choose_format<'a>(&mut self, common: &'a [NegotiatedFormat]) -> Option<&'a NegotiatedFormat> {
        common.first()
    }

    fn start(&mut self, format: &NegotiatedFormat) -> Result<(), Box<dyn RdpsndError>> {
        let f = format.format();
        let chosen = Some((f.n_samples_per_sec, f.n_channels));
        self.state.send_modify(|(generation, state)| {
            *generation += 1;
            *state = chosen;
        });
        Ok(())
    }

    fn stop(&mut self) {
        self.state.send_modify(|(generation, state)| {
            *generation += 1;
            *state = None;
        });
    }
}

/// Plays the beeps in real time, 20 ms per wave, while a format is chosen.
async fn play(
    events: mpsc::UnboundedSender<ServerEvent>,
    mut state: watch::Receiver<SpeakerState>,
    options: SoundOptions,
    shared: Arc<Shared>,
) {
    loop {
        let (generation, format) = *state.borrow_and_update();
        let Some((rate, channels)) = format else {
            if state.changed().await.is_err() {
                return;
            }
            continue;
        };
        if let Ok(mut f) = shared.speaker_format.lock() {
            *f = Some((rate, channels));
        }
        let mut beeps = Beeps::new(rate, options.tone_hz, options.level_dbfs, options.beep_ms, options.gap_ms);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        // Exact block sizes: 20 ms is 882 samples at 44.1 kHz, 960 at 48 kHz.
        let per_wave = rate as usize / 50;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = state.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if state.borrow().0 != generation {
                        break;
                    }
                    continue;
                }
            }
            let start_sample = beeps.position();
            let (samples, onsets) = beeps.next_block(per_wave);
            let mut data = Vec::with_capacity(samples.len() * usize::from(channels) * 2);
            for s in &samples {
                for _ in 0..channels {
                    data.extend_from_slice(&s.to_le_bytes());
                }
            }
            let ts = (start_sample * 1000 / u64::from(rate)) as u32;
            let handed = unix_ms();
            if events.send(ServerEvent::Rdpsnd(RdpsndServerMessage::Wave(data, ts))).is_err() {
                return;
            }
            shared.waves.fetch_add(1, Ordering::Relaxed);
            if !onsets.is_empty() {
                if let Ok(mut o) = shared.onsets.lock() {
                    o.extend(onsets.iter().map(|&k| handed + k as f64 * 1000.0 / f64::from(rate)));
                }
            }
        }
    }
}

// ---- sound in ----

struct Microphone {
    server: AudinServer,
    shared: Arc<Shared>,
}

impl Microphone {
    fn new(shared: Arc<Shared>) -> Self {
        let offered = vec![
            AudinFormat::pcm(48_000, 1),
            AudinFormat::pcm(48_000, 2),
            AudinFormat::pcm(44_100, 1),
            AudinFormat::pcm(44_100, 2),
            AudinFormat::pcm(16_000, 1),
        ];
        Self { server: AudinServer::new(offered), shared }
    }
}

impl_as_any!(Microphone);

impl DvcProcessor for Microphone {
    fn channel_name(&self) -> &str {
        AUDIO_INPUT
    }

    fn start(&mut self, _channel_id: u32) -> PduResult<Vec<DvcMessage>> {
        Ok(dvc_messages(self.server.start()))
    }

    fn process(&mut self, _channel_id: u32, payload: &[u8]) -> PduResult<Vec<DvcMessage>> {
        let step = match self.server.on_message(payload) {
            Ok(step) => step,
            Err(e) => {
                // A bad message is dropped, as a workstation would; the test sees the gap.
                eprintln!("sound workstation: AUDIO_INPUT: {e}");
                return Ok(Vec::new());
            }
        };
        if let Ok(mut f) = self.shared.microphone_format.lock() {
            *f = self.server.format().map(|f| (f.samples_per_sec, f.channels));
        }
        if !step.samples.is_empty() {
            let now = unix_ms();
            if let Ok(mut r) = self.shared.recording.lock() {
                if r.rate != step.rate {
                    // A new rate starts a new recording.
                    *r = Recording { rate: step.rate, ..Recording::default() };
                }
                r.samples.extend_from_slice(&step.samples);
                let end = r.samples.len();
                r.arrivals.push((now, end));
            }
        }
        Ok(dvc_messages(step.replies))
    }
}

impl DvcServerProcessor for Microphone {}


#[cfg(test)]
mod tests {
    use std::time::Instant;

    use ironrdp_tokio::FramedWrite as _;
    use rebond_rdp::{CertTrust, ConnectRequest, Session, SessionEvent, SoundChannels};

    use super::*;

    fn request(ws: &SoundWorkstation, ca: &TestCa, password: &str) -> ConnectRequest {
        ConnectRequest {
            host: ws.host.clone(),
            port: ws.port,
            trust: CertTrust::Ca(vec![std::fs::read(&ca.ca_file).expect("CA file")]),
            username: "alice".to_owned(),
            password: zeroize::Zeroizing::new(password.to_owned()),
            domain: None,
            width: WIDTH,
            height: HEIGHT,
            keyboard_layout: 0x0409,
            connect_timeout: Duration::from_secs(10),
            sound: SoundChannels::default(),
        }
    }

    fn rgb_at(session: &Session, x: u16, y: u16) -> [u8; 3] {
        let i = (usize::from(y) * usize::from(session.width()) + usize::from(x)) * 4;
        let p = &session.pixels()[i..i + 3];
        [p[0], p[1], p[2]]
    }

    /// Reads frames until `done` holds for the session (or `timeout`); true if it did.
    async fn read_until(
        framed: &mut rebond_rdp::WorkstationFramed,
        session: &mut Session,
        timeout: Duration,
        mut done: impl FnMut(&Session, &[SessionEvent]) -> bool,
    ) -> anyhow::Result<bool> {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let Ok(pdu) = tokio::time::timeout(left, framed.read_pdu()).await else { return Ok(false) };
            let (action, frame) = pdu?;
            let processed = session.process(action, &frame).map_err(anyhow::Error::msg)?;
            for r in processed.responses {
                framed.write_all(&r).await?;
            }
            if done(session, &processed.events) {
                return Ok(true);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_credentials_first_frame_and_a_key() {
        let dir = crate::temp_dir("sound-ws");
        let ca = TestCa::create(&dir, "Rebond sound test CA").unwrap();
        let ws = SoundWorkstation::start(SoundWorkstationOptions::new(&ca, "alice", "right horse").unwrap()).unwrap();

        let started = Instant::now();
        let mut connected = rebond_rdp::connect(&request(&ws, &ca, "right horse"), |_| {}).await.expect("connects");
        assert!(!connected.nla, "plain TLS security, credentials in the Client Info PDU");
        let mut session = Session::new(connected.result, None);
        assert_eq!((session.width(), session.height()), (WIDTH, HEIGHT));
        let framed = &mut connected.framed;
        let first = read_until(framed, &mut session, Duration::from_secs(10), |s, _| {
            rgb_at(s, 1000, 700) == BACKGROUND && rgb_at(s, SQUARE.0 + 10, SQUARE.1 + 10) == SQUARE_OFF
        })
        .await
        .unwrap();
        assert!(first, "the first frame shows the desktop");
        eprintln!("first frame after {:?}", started.elapsed());

        for f in session.synchronize().unwrap() {
            framed.write_all(&f).await.unwrap();
        }
        let press = [rebond_policy::Input::Key { scancode: 0x1e, extended: false, down: true }];
        let release = [rebond_policy::Input::Key { scancode: 0x1e, extended: false, down: false }];
        for f in session.input(&press).unwrap().into_iter().chain(session.input(&release).unwrap()) {
            framed.write_all(&f).await.unwrap();
        }
        let toggled = read_until(framed, &mut session, Duration::from_secs(5), |s, _| {
            rgb_at(s, SQUARE.0 + 10, SQUARE.1 + 10) == SQUARE_ON
        })
        .await
        .unwrap();
        assert!(toggled, "a key press changes the square's colour");
        assert_eq!(ws.key_presses(), 1);
        for f in session.shutdown() {
            let _ = framed.write_all(&f).await;
        }
        drop(connected.framed);

        // A wrong password: refused while connecting, or the session ends before any picture.
        match rebond_rdp::connect(&request(&ws, &ca, "wrong horse"), |_| {}).await {
            Err(e) => eprintln!("wrong password refused while connecting: {e}"),
            Ok(mut c) => {
                let mut session = Session::new(c.result, None);
                let mut ended = false;
                let got_picture = read_until(&mut c.framed, &mut session, Duration::from_secs(5), |s, events| {
                    ended |= events.iter().any(|e| matches!(e, SessionEvent::Ended { .. }));
                    ended || rgb_at(s, 1000, 700) == BACKGROUND
                })
                .await;
                eprintln!("wrong password: connected, then {got_picture:?} (ended: {ended})");
                assert!(!matches!(got_picture, Ok(true)) || ended, "no picture with a wrong password");
            }
        }
        drop(ws);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Both sound channels against rebond-rdp's own sound client (the worker's): the
    /// beeps arrive with their frequency and rhythm, and a tone sent to the microphone
    /// is recorded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn speaker_and_microphone_round_trip() {
        use crate::tone::{dominant_hz, onsets};

        let dir = crate::temp_dir("sound-ws-audio");
        let ca = TestCa::create(&dir, "Rebond sound test CA").unwrap();
        let mut options = SoundWorkstationOptions::new(&ca, "alice", "right horse").unwrap();
        options.sound = SoundOptions { tone_hz: 660.0, level_dbfs: -12.0, beep_ms: 100, gap_ms: 400 };
        let ws = SoundWorkstation::start(options).unwrap();

        let mut req = request(&ws, &ca, "right horse");
        req.sound = SoundChannels { speaker: true, microphone: true };
        let mut connected = rebond_rdp::connect(&req, |_| {}).await.expect("connects");
        let mut session = Session::new(connected.result, connected.speaker.take());
        let framed = &mut connected.framed;

        let (mut heard, mut heard_rate) = (Vec::<i16>::new(), 0);
        let mut mic = Beeps::new(48_000, 1000.0, -12.0, 100, 400);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            tokio::select! {
                pdu = framed.read_pdu() => {
                    let (action, frame) = pdu.unwrap();
                    let processed = session.process(action, &frame).unwrap();
                    for r in processed.responses {
                        framed.write_all(&r).await.unwrap();
                    }
                    for e in processed.events {
                        if let SessionEvent::Speaker(rebond_rdp::SpeakerSound::Samples { rate, samples }) = e {
                            heard_rate = rate;
                            heard.extend(samples);
                        }
                    }
                }
                _ = tick.tick() => {
                    let (samples, _) = mic.next_block(960);
                    for f in session.microphone(&samples).unwrap() {
                        framed.write_all(&f).await.unwrap();
                    }
                }
            }
        }
        eprintln!(
            "speaker: {} samples at {heard_rate} Hz, {} waves sent, {} onsets played; microphone: {:?}, {} samples",
            heard.len(),
            ws.waves_sent(),
            ws.played_onsets().len(),
            ws.microphone_format(),
            ws.recording().samples.len()
        );

        // Sound out: 660 Hz beeps, 500 ms apart.
        assert_eq!(heard_rate, 48_000);
        assert!(heard.len() > 48_000, "at least a second of sound");
        let starts = onsets(&heard, heard_rate, -30.0, 200);
        assert!(starts.len() >= 3, "{starts:?}");
        for w in starts.windows(2) {
            assert!((w[1] - w[0]).abs_diff(24_000) < 480, "{starts:?}");
        }
        let beep = &heard[starts[0]..starts[0] + 4_800];
        assert!((dominant_hz(beep, heard_rate).unwrap() - 660.0).abs() <= 2.0);
        let played = ws.played_onsets();
        assert!(played.len() >= starts.len(), "{played:?}");
        for w in played.windows(2) {
            assert!((w[1] - w[0] - 500.0).abs() < 60.0, "{played:?}");
        }

        // Sound in: the 1000 Hz beeps, recorded with their arrival times.
        let rec = ws.recording();
        assert_eq!(ws.microphone_format(), Some((48_000, 1)));
        assert_eq!(rec.rate, 48_000);
        assert!(rec.samples.len() > 48_000, "{}", rec.samples.len());
        let mic_starts = onsets(&rec.samples, rec.rate, -30.0, 200);
        assert!(mic_starts.len() >= 3, "{mic_starts:?}");
        let tone = &rec.samples[mic_starts[0]..mic_starts[0] + 4_800];
        assert!((dominant_hz(tone, rec.rate).unwrap() - 1000.0).abs() <= 2.0);
        assert!(rec.arrival_of(mic_starts[0]).is_some());
        assert!(rec.arrivals.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));

        for f in session.shutdown() {
            let _ = framed.write_all(&f).await;
        }
        drop(ws);
        let _ = std::fs::remove_dir_all(dir);
    }
}
