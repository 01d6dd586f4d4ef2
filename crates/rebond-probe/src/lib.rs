//! `rebond probe`: a headless client that speaks the browser protocol. It signs in
//! like the page, receives and decodes the desktop, types, and reports figures.
//! Tests, benchmarks and administrators use it.

mod framebuffer;
mod http;
mod keys;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use rebond_wire::{Downlink, ErrorCode, Lang, Uplink, SUBPROTOCOL};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

pub use framebuffer::Framebuffer;
pub use keys::{parse_keys, parse_script, KeyEvent, KeyStep};

/// A password held in memory that is wiped when dropped.
pub type Password = zeroize::Zeroizing<String>;

/// What to do.
pub struct ProbeOptions {
    /// `https://HOST:PORT`
    pub url: String,
    pub user: String,
    pub password: Password,
    /// Accept the gateway's certificate without verification.
    pub insecure: bool,
    /// Trust this CA (PEM) for the gateway.
    pub ca_file: Option<PathBuf>,
    /// Keys to type once the first frame arrived (`{Enter}`-style names).
    pub type_text: Option<String>,
    /// How long to stay after the first frame.
    pub duration: Duration,
    pub screenshot: Option<PathBuf>,
    pub width: u16,
    pub height: u16,
    pub language: String,
    /// Milliseconds between typed key events.
    pub key_interval_ms: u64,
    /// After `duration`, stay this long more without typing, drawing what comes, so the
    /// screenshot shows the workstation's screen once it has answered the last key. Not
    /// counted in the figures.
    pub settle: Duration,
}

/// The message that presses (`down`) or releases key `k`.
fn key_message(k: keys::KeyEvent, down: bool) -> Message {
    Message::Binary(Uplink::Key { scancode: k.scancode, extended: k.extended, down }.encode().into())
}

/// The figures, printed by `--json`.
#[derive(Debug, Default, Serialize)]
pub struct ProbeReport {
    pub signed_in: bool,
    pub sign_in_ms: Option<u64>,
    pub time_to_first_frame_ms: Option<u64>,
    pub desktop_width: u16,
    pub desktop_height: u16,
    pub bytes_received: u64,
    pub messages_received: u64,
    pub frames: u64,
    pub tiles_png: u64,
    pub tiles_jpeg: u64,
    /// Moved rectangles received (scrolls, dragged windows).
    pub moves: u64,
    /// Tiles drawn from the page's cache (content that came back).
    pub tiles_from_cache: u64,
    pub keys_sent: u64,
    /// Pointer shapes received (the workstation's cursor, drawn by the browser).
    pub pointer_shapes: u64,
    /// The progress stages the gateway reported, in order (5: waking the workstation).
    pub stages: Vec<u8>,
    /// Frames per second after the first frame.
    pub frames_per_second: f64,
    /// Key pressed → the end of the next frame, as the page sees it (milliseconds):
    /// median, 99th percentile, and how many keys were measured.
    pub key_to_frame_median_ms: Option<f64>,
    pub key_to_frame_p99_ms: Option<f64>,
    pub key_to_frame_samples: usize,
    /// Seconds measured after the first frame.
    pub measured_seconds: f64,
    /// Bytes per second to the browser after the first frame.
    pub bytes_per_second: f64,
    pub error: Option<ProbeError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeError {
    pub code: String,
    pub number: u16,
    pub message: String,
}

impl ProbeError {
    fn from_code(code: ErrorCode) -> Self {
        Self { code: code.name().into(), number: code as u16, message: code.sentence(Lang::En).into() }
    }
}

/// A signed-in client: it holds the session cookie and can open session sockets,
/// as the page does (and again after a network drop, without the password).
pub struct Client {
    target: http::Target,
    tls: Arc<rustls::ClientConfig>,
    cookie: String,
}

/// The session socket.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl Client {
    /// Signs in; a refusal by the gateway is `Ok(Err(..))`.
    pub async fn sign_in(opts: &ProbeOptions) -> anyhow::Result<Result<Self, ProbeError>> {
        let target = http::Target::parse(&opts.url)?;
        let tls = Arc::new(http::client_config(opts.insecure, opts.ca_file.as_deref())?);
        Ok(match http::sign_in(&target, tls.clone(), opts).await? {
            http::SignInOutcome::Accepted { cookie } => Ok(Self { target, tls, cookie }),
            http::SignInOutcome::Refused { code, message } => {
                Err(ProbeError { code: code.name().into(), number: code as u16, message })
            }
        })
    }

    /// The session cookie (`rebond_session=…`), to show that it is what resumes a session.
    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    /// Opens the session socket, with the version subprotocol and the session cookie.
    pub async fn open_socket(&self) -> anyhow::Result<Socket> {
        self.open_socket_with_key(None).await
    }

    /// Opens the session socket offering the key of an earlier socket, as a page
    /// reconnecting after a network drop does.
    pub async fn open_socket_with_key(&self, key: Option<[u8; rebond_wire::SOCKET_KEY_LEN]>) -> anyhow::Result<Socket> {
        let stream = http::connect_tls(&self.target, self.tls.clone()).await?;
        let protocols = match key {
            Some(k) => format!("{SUBPROTOCOL}, {}{}", rebond_wire::SOCKET_KEY_PROTOCOL_PREFIX, hex::encode(k)),
            None => SUBPROTOCOL.to_owned(),
        };
        let request = tokio_tungstenite::tungstenite::http::Request::builder()
            .uri(format!("wss://{}/ws", self.target.authority()))
            .header("Host", self.target.authority())
            .header("Cookie", &self.cookie)
            .header("Sec-WebSocket-Protocol", protocols)
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", tokio_tungstenite::tungstenite::handshake::client::generate_key())
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .body(())?;
        let (ws, _) = tokio_tungstenite::client_async(request, stream).await?;
        Ok(ws)
    }
}

/// Waits for the next downlink message; `None` when the socket closed.
pub async fn next_message(ws: &mut Socket) -> anyhow::Result<Option<Downlink>> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => return Ok(Some(Downlink::decode(&b)?)),
            Some(Ok(Message::Close(_))) | None => return Ok(None),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// The `q` quantile (nearest rank) of `values`, if any.
pub fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// Runs a probe. Network trouble reaching the gateway is an `Err`; everything the
/// gateway answers (including refusals) is in the report.
pub async fn run(opts: ProbeOptions) -> anyhow::Result<(ProbeReport, Framebuffer)> {
    let mut report = ProbeReport::default();
    let mut fb = Framebuffer::default();

    let started = Instant::now();
    let client = Client::sign_in(&opts).await?;
    report.sign_in_ms = Some(started.elapsed().as_millis() as u64);
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(e);
            return Ok((report, fb));
        }
    };
    report.signed_in = true;
    let mut ws = client.open_socket().await?;

    let mut keys: std::collections::VecDeque<KeyStep> =
        opts.type_text.as_deref().map(parse_script).transpose()?.unwrap_or_default().into();
    let mut acks = rebond_wire::FrameAcks::default();
    let mut first_frame: Option<Instant> = None;
    let mut bytes_after_first = 0u64;
    let (mut frames_after_first, mut keys_waiting, mut latencies) = (0u64, Vec::<Instant>::new(), Vec::<f64>::new());
    let mut key_timer = tokio::time::interval(Duration::from_millis(opts.key_interval_ms.max(1)));
    let overall = tokio::time::sleep(opts.duration + opts.settle + Duration::from_secs(60));
    tokio::pin!(overall);
    // The figures, taken when `duration` ends (before settling): seconds, bytes, frames.
    let mut measured: Option<(f64, u64, u64)> = None;
    // The keys pressed and not yet released.
    let mut held: Vec<keys::KeyEvent> = Vec::new();

    loop {
        let deadline = first_frame.map(|t| t + opts.duration + if measured.is_some() { opts.settle } else { Duration::ZERO });
        let until_end = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = ws.next() => {
                let bytes = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                };
                report.bytes_received += bytes.len() as u64;
                report.messages_received += 1;
                if first_frame.is_some() {
                    bytes_after_first += bytes.len() as u64;
                }
                match Downlink::decode(&bytes) {
                    Ok(Downlink::DesktopSize { width, height }) => {
                        fb.resize(width, height);
                        report.desktop_width = width;
                        report.desktop_height = height;
                    }
                    Ok(Downlink::Tile { x, y, width, height, codec, data }) => {
                        match codec {
                            rebond_wire::ImageCodec::Png => report.tiles_png += 1,
                            rebond_wire::ImageCodec::Jpeg => report.tiles_jpeg += 1,
                        }
                        fb.draw(x, y, width, height, codec, &data)?;
                    }
                    Ok(Downlink::Moves { moves }) => {
                        report.moves += moves.len() as u64;
                        fb.apply_moves(&moves)?;
                    }
                    Ok(Downlink::CacheDraws { rects }) => {
                        report.tiles_from_cache += rects.iter().map(|c| c.tiles().count() as u64).sum::<u64>();
                        fb.draw_kept(&rects)?;
                    }
                    Ok(Downlink::CacheStores { rects }) => fb.keep(&rects)?,
                    Ok(Downlink::FrameEnd { seq }) => {
                        report.frames += 1;
                        let now = Instant::now();
                        latencies.extend(keys_waiting.drain(..).map(|k| now.duration_since(k).as_secs_f64() * 1000.0));
                        if first_frame.is_some() {
                            frames_after_first += 1;
                        }
                        if first_frame.is_none() {
                            first_frame = Some(Instant::now());
                            report.time_to_first_frame_ms = Some(started.elapsed().as_millis() as u64);
                            if !keys.is_empty() {
                                // Point at the middle of the desktop first, as a person would,
                                // so the window there has the keyboard focus.
                                let (x, y) = (fb.width / 2, fb.height / 2);
                                let _ = ws.send(Message::Binary(Uplink::PointerMove { x, y }.encode().into())).await;
                            }
                        }
                        // Acknowledged as the page does (only when the worker has no room
                        // left). A send fails when the gateway closes the session; the
                        // reason is read next.
                        if let Some(seq) = acks.drawn(seq) {
                            let _ = ws.send(Message::Binary(Uplink::FrameAck { seq }.encode().into())).await;
                        }
                    }
                    Ok(Downlink::Error { code }) => {
                        report.error = Some(ProbeError::from_code(code));
                        break;
                    }
                    Ok(Downlink::PointerShape { .. }) => report.pointer_shapes += 1,
                    Ok(Downlink::Status { stage }) => report.stages.push(stage as u8),
                    Ok(_) => {}
                    Err(e) => anyhow::bail!("the gateway sent an undecodable message: {e}"),
                }
            }
            _ = key_timer.tick(), if first_frame.is_some() && !keys.is_empty() => {
                let k = match keys.pop_front().expect("not empty") {
                    KeyStep::Key(k) => k,
                    KeyStep::Wait(ms) => {
                        key_timer.reset_after(Duration::from_millis(ms));
                        continue;
                    }
                };
                let _ = ws.send(key_message(k, k.down)).await;
                report.keys_sent += 1;
                held.retain(|h| (h.scancode, h.extended) != (k.scancode, k.extended));
                if k.down {
                    keys_waiting.push(Instant::now());
                    held.push(k);
                }
            }
            _ = until_end => {
                if measured.is_some() || opts.settle.is_zero() {
                    break;
                }
                let since_first = first_frame.map_or(0.0, |t| t.elapsed().as_secs_f64());
                measured = Some((since_first, bytes_after_first, frames_after_first));
                // No more typing; what is held goes up now, or the workstation would
                // repeat it while the probe settles.
                keys.clear();
                for k in held.drain(..) {
                    let _ = ws.send(key_message(k, false)).await;
                }
            }
            _ = &mut overall => break,
        }
    }
    if let Some(t) = first_frame {
        let (seconds, bytes, frames) = measured.unwrap_or((t.elapsed().as_secs_f64(), bytes_after_first, frames_after_first));
        report.measured_seconds = seconds;
        if seconds > 0.0 {
            report.bytes_per_second = bytes as f64 / seconds;
            report.frames_per_second = frames as f64 / seconds;
        }
    }
    report.key_to_frame_samples = latencies.len();
    report.key_to_frame_median_ms = percentile(&mut latencies, 0.5);
    report.key_to_frame_p99_ms = percentile(&mut latencies, 0.99);
    let _ = ws.close(None).await;
    if let Some(path) = &opts.screenshot {
        if fb.width > 0 {
            fb.save_png(path)?;
        }
    }
    Ok((report, fb))
}
