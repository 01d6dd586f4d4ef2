//! HTTPS and WebSocket: the page, sign-in, and the session socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rebond_policy::{UplinkFilter, Verdict};
use rebond_wire::{Downlink, ErrorCode, Lang, Stage, PROTOCOL_VERSION, SUBPROTOCOL};
use rebond_worker::link::ToWorker;
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::sessions::{hash_token, Admission, Outgoing, Session};
use crate::Gateway;

pub const COOKIE: &str = "rebond_session";

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/", get(|| async { page("text/html; charset=utf-8", include_str!("../../../web/index.html")) }))
        .route("/app.js", get(|| async { page("text/javascript; charset=utf-8", include_str!("../../../web/app.js")) }))
        .route("/sound.js", get(|| async { page("text/javascript; charset=utf-8", include_str!("../../../web/sound.js")) }))
        .route("/sound-worklet.js", get(|| async { page("text/javascript; charset=utf-8", include_str!("../../../web/sound-worklet.js")) }))
        .route("/style.css", get(|| async { page("text/css; charset=utf-8", include_str!("../../../web/style.css")) }))
        .route("/i18n.json", get(i18n))
        .route("/api/sign-in", post(sign_in))
        .route("/api/sign-out", post(sign_out))
        .route("/ws", get(socket))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(gw)
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

fn lang_of(headers: &HeaderMap) -> Lang {
    Lang::negotiate(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or(""))
}

async fn i18n() -> Response {
    let mut root = serde_json::Map::new();
    for lang in Lang::ALL {
        let mut texts = serde_json::Map::new();
        for (key, text) in rebond_wire::CATALOG_KEYS {
            texts.insert((*key).into(), text.get(lang).into());
        }
        let mut errors = serde_json::Map::new();
        for code in ErrorCode::ALL {
            errors.insert((code as u16).to_string(), serde_json::json!({ "name": code.name(), "sentence": code.sentence(lang) }));
        }
        texts.insert("errors".into(), errors.into());
        root.insert(lang.tag().into(), texts.into());
    }
    Json(serde_json::Value::Object(root)).into_response()
}

/// Ready while the node takes new sessions: not at capacity, not draining.
async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    if gw.is_ready() {
        "ready".into_response()
    } else if gw.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "at capacity").into_response()
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    let text = gw.metrics.render(gw.sessions.count(), gw.config.max_sessions, gw.is_draining());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// A refusal, as the page and `rebond probe` read it.
/// Who tried to sign in, for the metrics and the audit log.
struct Attempt<'a> {
    user: &'a str,
    peer: SocketAddr,
}

fn refused(gw: &Gateway, who: Attempt<'_>, status: StatusCode, code: ErrorCode, lang: Lang) -> Response {
    refused_with(gw, who, status, code, lang, serde_json::Map::new())
}

/// A refusal (counted and audited) with more for the page: what to show next, how long to wait.
fn refused_with(gw: &Gateway, who: Attempt<'_>, status: StatusCode, code: ErrorCode, lang: Lang, extra: serde_json::Map<String, serde_json::Value>) -> Response {
    gw.metrics.sign_in(code.name());
    gw.audit("sign_in", who.user, serde_json::json!({ "outcome": code.name(), "number": code as u16, "peer": who.peer.to_string() }));
    refusal_with(status, code, lang, extra)
}

/// The page's answer to a refused request: the code, its number and its sentence (and
/// `extra` fields, which may replace the sentence).
fn refusal_with(status: StatusCode, code: ErrorCode, lang: Lang, extra: serde_json::Map<String, serde_json::Value>) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("code".into(), code.name().into());
    body.insert("number".into(), (code as u16).into());
    body.insert("message".into(), code.sentence(lang).into());
    body.extend(extra);
    (status, Json(serde_json::Value::Object(body))).into_response()
}

/// The page must show a QR code or ask for a code, or the code was wrong.
fn second_factor_refusal(gw: &Gateway, who: Attempt<'_>, refusal: crate::SecondFactorRefusal, lang: Lang) -> Response {
    use crate::second_factor::Challenge;
    let mut extra = serde_json::Map::new();
    let code = match refusal {
        crate::SecondFactorRefusal::Challenge(Challenge::Code) => {
            extra.insert("second_factor".into(), "code".into());
            ErrorCode::SecondFactorRequired
        }
        crate::SecondFactorRefusal::Challenge(Challenge::Enrol { otpauth, secret_base32, qr_svg }) => {
            use base64::Engine as _;
            let qr = format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(qr_svg));
            extra.insert("second_factor".into(), "enrol".into());
            extra.insert("otpauth".into(), otpauth.into());
            extra.insert("secret".into(), secret_base32.into());
            extra.insert("qr".into(), qr.into());
            ErrorCode::SecondFactorRequired
        }
        crate::SecondFactorRefusal::Wrong => {
            extra.insert("second_factor".into(), "code".into());
            ErrorCode::SecondFactorWrong
        }
        crate::SecondFactorRefusal::Unavailable => {
            return refused(gw, who, StatusCode::SERVICE_UNAVAILABLE, ErrorCode::SignInUnavailable, lang);
        }
    };
    info!(peer = %who.peer, user = %who.user, outcome = %code, "sign-in waits for the second factor");
    refused_with(gw, who, StatusCode::UNAUTHORIZED, code, lang, extra)
}

/// A throttled sign-in: the wait in the body (for the page's sentence) and in `Retry-After`.
fn throttled(gw: &Gateway, who: Attempt<'_>, wait: u64, lang: Lang) -> Response {
    let code = ErrorCode::TooManyAttempts;
    let minutes = wait.div_ceil(60).max(1);
    let mut extra = serde_json::Map::new();
    extra.insert("message".into(), code.sentence(lang).replace("{minutes}", &minutes.to_string()).into());
    extra.insert("retry_after_seconds".into(), wait.into());
    let mut response = refused_with(gw, who, StatusCode::TOO_MANY_REQUESTS, code, lang, extra);
    if let Ok(v) = header::HeaderValue::from_str(&wait.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// Browsers send `Origin` on every POST and WebSocket; it must be us (CSRF,
/// cross-site WebSocket hijacking). Non-browser clients send none.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    origin == format!("https://{host}")
}

fn token_from(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(&format!("{COOKIE}=")).map(str::to_owned))
}

#[derive(Deserialize)]
struct SignInRequest {
    user: String,
    #[serde(deserialize_with = "zeroizing")]
    password: Zeroizing<String>,
    #[serde(default)]
    language: String,
    #[serde(default = "default_width")]
    width: u16,
    #[serde(default = "default_height")]
    height: u16,
    /// The page never names a host; a request that does must name the person's own route.
    #[serde(default)]
    workstation: Option<String>,
    /// The code from the authenticator, when the person's policy asks for a second factor.
    #[serde(default)]
    code: Option<String>,
}

fn default_width() -> u16 {
    1280
}
fn default_height() -> u16 {
    800
}

fn zeroizing<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

async fn sign_in(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if !json || !same_origin(&headers) {
        warn!(%peer, "sign-in refused: not a same-origin JSON request");
        return refused(&gw, Attempt { user: "", peer }, StatusCode::FORBIDDEN, ErrorCode::BadRequest, lang);
    }
    let req: SignInRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            warn!(%peer, "sign-in refused: malformed request");
            return refused(&gw, Attempt { user: "", peer }, StatusCode::BAD_REQUEST, ErrorCode::BadRequest, lang);
        }
    };
    if gw.is_draining() {
        return refused(&gw, Attempt { user: "", peer }, StatusCode::SERVICE_UNAVAILABLE, ErrorCode::GatewayShuttingDown, lang);
    }
    let typed = rebond_directory::normalize_user(&req.user);
    let signed_in = match gw.sign_in(&req.user, &req.password, peer.ip()).await {
        Ok(s) => s,
        Err(refusal) => {
            info!(%peer, user = %typed, outcome = %refusal.code, "sign-in refused");
            let status = match refusal.code {
                ErrorCode::BadCredentials | ErrorCode::PasswordMissing => StatusCode::UNAUTHORIZED,
                ErrorCode::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::SignInUnavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::FORBIDDEN,
            };
            return match refusal.retry_after_seconds {
                Some(wait) => throttled(&gw, Attempt { user: &typed, peer }, wait, lang),
                None => refused(&gw, Attempt { user: &typed, peer }, status, refusal.code, lang),
            };
        }
    };
    let crate::SignedIn { user, domain, groups, route } = signed_in;
    // The gateway decides where a person goes: their route, or one of the workstations
    // their group may choose from. A page asking for any other host is refused.
    let choices = crate::routing::workstation_choices(&gw.config, &groups, route.as_ref());
    let route = match req.workstation.as_deref() {
        None if choices.len() > 1 => {
            let mut extra = serde_json::Map::new();
            extra.insert("choices".into(), choices.iter().map(|r| r.url()).collect::<Vec<_>>().into());
            return refused_with(&gw, Attempt { user: &user, peer }, StatusCode::UNAUTHORIZED, ErrorCode::ChooseWorkstation, lang, extra);
        }
        None => choices.into_iter().next(),
        Some(asked) => match choices.into_iter().find(|r| r.url() == asked) {
            Some(r) => Some(r),
            None => {
                warn!(%peer, %user, asked, "sign-in refused: asked for a workstation that is not theirs");
                gw.audit("route_violation", &user, serde_json::json!({ "asked": asked, "peer": peer.to_string() }));
                return refused(&gw, Attempt { user: &user, peer }, StatusCode::FORBIDDEN, ErrorCode::WorkstationNotYours, lang);
            }
        },
    };
    let Some(route) = route else {
        info!(%peer, %user, outcome = %ErrorCode::NoWorkstation, "sign-in refused");
        return refused(&gw, Attempt { user: &user, peer }, StatusCode::FORBIDDEN, ErrorCode::NoWorkstation, lang);
    };

    if rebond_policy::policy_for(&gw.config.policies, &groups).is_some_and(|p| p.second_factor) {
        if let Err(refusal) = gw.second_factor(&user, req.code.as_deref(), peer.ip()).await {
            return second_factor_refusal(&gw, Attempt { user: &user, peer }, refusal, lang);
        }
    }

    let token = crate::new_token();
    let layout = rebond_rdp_layout(&req.language);
    let sound = rebond_policy::policy_for(&gw.config.policies, &groups)
        .map_or_else(Default::default, |p| rebond_rdp::SoundChannels { speaker: p.speaker, microphone: p.microphone });
    let page = crate::PageSettings { width: req.width, height: req.height, keyboard_layout: layout, sound };
    let start = || gw.start_request(&user, domain.as_deref(), &req.password, &route, page);
    match gw.sessions.admit(&user, hash_token(&token), gw.config.max_sessions, sound, start) {
        Ok(Admission::Started(s)) => {
            info!(%peer, %user, session = s.id, workstation = %route.url(), "signed in");
            tokio::spawn(gw.clone().watch(s, route.url(), groups));
        }
        Ok(Admission::TakenOver(s)) => info!(%peer, %user, session = s.id, "signed in, taking over the running session"),
        Ok(Admission::AtCapacity) => {
            warn!(%peer, %user, max = gw.config.max_sessions, "sign-in refused: gateway at capacity");
            return refused(&gw, Attempt { user: &user, peer }, StatusCode::SERVICE_UNAVAILABLE, ErrorCode::GatewayAtCapacity, lang);
        }
        Err(e) => {
            warn!(%peer, %user, error = %e, "cannot start a bounce worker");
            return refused(&gw, Attempt { user: &user, peer }, StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::WorkerFailed, lang);
        }
    }
    gw.metrics.sign_in("accepted");
    gw.audit("sign_in", &user, serde_json::json!({ "outcome": "accepted", "peer": peer.to_string(), "workstation": route.url() }));
    let cookie = format!("{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict");
    ([(header::SET_COOKIE, cookie)], Json(serde_json::json!({ "ok": true }))).into_response()
}

fn rebond_rdp_layout(language: &str) -> u32 {
    crate::keyboard_layout_for(language)
}

async fn sign_out(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return refusal_with(StatusCode::FORBIDDEN, ErrorCode::BadRequest, lang_of(&headers), serde_json::Map::new());
    }
    if let Some(token) = token_from(&headers) {
        gw.sessions.sign_out(&hash_token(&token));
    }
    let cookie = format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Json(serde_json::json!({ "ok": true }))).into_response()
}

async fn socket(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !same_origin(&headers) {
        warn!(%peer, "WebSocket refused: foreign origin");
        return StatusCode::FORBIDDEN.into_response();
    }
    let protocols = headers.get(header::SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok()).unwrap_or("");
    let key = crate::sessions::offered_socket_key(protocols);
    if !protocols.split(',').any(|p| p.trim() == SUBPROTOCOL) {
        return (StatusCode::BAD_REQUEST, "unsupported protocol version").into_response();
    }
    let session = token_from(&headers).map(|t| gw.sessions.by_token(&hash_token(&t)));
    ws.protocols([SUBPROTOCOL])
        // Large enough that an oversized message reaches the filter and is recorded as a
        // violation, small enough to bound memory.
        .max_message_size(64 << 10)
        // What a page sends is small (keys, pointer, 20 ms of microphone); the default
        // 128 KiB read buffer is zeroed on every read attempt (tungstenite), which was
        // the largest single cost of a typing session in the gateway (`perf`).
        .read_buffer_size(UPLINK_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            match session {
                Some(Ok(session)) => serve_socket(gw, session, socket, peer, key).await,
                Some(Err(code)) => refuse_socket(socket, code.unwrap_or(ErrorCode::SessionExpired)).await,
                None => refuse_socket(socket, ErrorCode::SessionExpired).await,
            }
        })
}

async fn refuse_socket(mut socket: WebSocket, code: ErrorCode) {
    let _ = socket.send(Message::Binary(Downlink::Hello { version: PROTOCOL_VERSION }.encode().into())).await;
    let _ = socket.send(Message::Binary(Downlink::Error { code }.encode().into())).await;
    let _ = socket.send(Message::Close(None)).await;
}

const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from a page's socket at a time (a larger message still fits: the
/// buffer grows to it).
const UPLINK_READ_BUFFER: usize = 4 << 10;
/// Messages written to a page before one flush, at most.
const MAX_SEND_BATCH: usize = 64;

/// What the socket does once a batch is written.
enum AfterBatch {
    /// Go on serving.
    Carry,
    /// Close it, after telling the page why (if a reason is given).
    Close(Option<ErrorCode>),
    /// The session dropped its end of the queue.
    Gone,
}

/// Writes messages to a page and flushes once.
async fn send_all(socket: &mut WebSocket, batch: Vec<Vec<u8>>) -> Result<(), axum::Error> {
    use futures_util::SinkExt as _;
    for bytes in batch {
        socket.feed(Message::Binary(bytes.into())).await?;
    }
    socket.flush().await
}

/// Why the uplink ends a session.
enum UplinkEnd {
    Violation(rebond_policy::Violation),
    InjectedTyping,
}

/// Keystrokes far faster than a person: record, tell the person, and slow or block
/// as the policy says.
async fn on_injected_typing(
    gw: &Gateway,
    session: &Session,
    guard: &rebond_policy::TypingGuard,
    keys_per_second: f64,
    first: bool,
) -> Result<(), UplinkEnd> {
    use rebond_policy::TypingPolicy;
    let policy = gw.config.injected_typing;
    if first {
        warn!(session = session.id, user = %session.user, keys_per_second = keys_per_second.round(), ?policy, "injected typing");
        gw.audit("injected_typing", &session.user, serde_json::json!({ "session": session.id, "keys_per_second": keys_per_second.round(), "policy": format!("{policy:?}").to_lowercase() }));
        crate::metrics::Metrics::add(&gw.metrics.injected_typing, 1);
        let notice = match policy {
            TypingPolicy::Slow => Some(rebond_wire::Notice::InjectedTypingSlowed),
            TypingPolicy::Log => Some(rebond_wire::Notice::InjectedTypingRecorded),
            TypingPolicy::Block => None,
        };
        if let Some(notice) = notice {
            session.notify(Downlink::Notice { notice, seconds: 0 }.encode());
        }
    }
    match policy {
        TypingPolicy::Log => Ok(()),
        TypingPolicy::Slow => {
            tokio::time::sleep(Duration::from_millis(guard.delay_ms())).await;
            Ok(())
        }
        TypingPolicy::Block => Err(UplinkEnd::InjectedTyping),
    }
}

async fn serve_socket(gw: Arc<Gateway>, session: Arc<Session>, mut socket: WebSocket, peer: SocketAddr, key: Option<crate::sessions::SocketKey>) {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(4096);
    let (generation, status, key) = match session.attach(tx, key) {
        Ok(attached) => attached,
        Err(code) => {
            warn!(session = session.id, user = %session.user, %peer, "second socket refused: the session's socket is open elsewhere");
            gw.audit("socket_refused", &session.user, serde_json::json!({ "session": session.id, "peer": peer.to_string(), "reason": code.name() }));
            return refuse_socket(socket, code).await;
        }
    };
    let _ = socket.send(Message::Binary(Downlink::Hello { version: PROTOCOL_VERSION }.encode().into())).await;
    let _ = socket.send(Message::Binary(Downlink::SocketKey { key }.encode().into())).await;
    let sound = Downlink::SoundSettings {
        speaker: session.sound.speaker,
        microphone: session.sound.microphone,
        microphone_bitrate: gw.config.sound.microphone_bitrate,
    };
    let _ = socket.send(Message::Binary(sound.encode().into())).await;
    if let Some(stage) = status.filter(|s| *s != Stage::Ready) {
        let _ = socket.send(Message::Binary(Downlink::Status { stage }.encode().into())).await;
    }
    session.send(ToWorker::Attach).await;
    info!(session = session.id, %peer, "page attached");

    let mut filter = UplinkFilter::new(rebond_policy::MAX_SIDE, rebond_policy::MAX_SIDE).allow_microphone(session.sound.microphone);
    // The oldest key not yet followed by a frame, for the key-to-frame latency.
    let mut key_pending: Option<std::time::Instant> = None;
    let mut typing = rebond_policy::TypingGuard::default();
    let attached_at = std::time::Instant::now();
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let verdict = match incoming {
                    Some(Ok(Message::Binary(bytes))) => {
                        crate::metrics::Metrics::add(&gw.metrics.bytes_from_browsers, bytes.len() as u64);
                        crate::metrics::Metrics::add(&session.bytes_from_browser, bytes.len() as u64);
                        match filter.binary(&bytes) {
                            Verdict::Violation(v) => Err(UplinkEnd::Violation(v)),
                            verdict => {
                                let mut injected = None;
                                if let Verdict::Input(inputs) = &verdict {
                                    session.touch();
                                    if key_pending.is_none() && inputs.iter().any(|i| matches!(i, rebond_policy::Input::Key { down: true, .. })) {
                                        key_pending = Some(std::time::Instant::now());
                                    }
                                    let typed = inputs.iter().any(|i| matches!(i,
                                        rebond_policy::Input::Key { scancode, extended, down: true } if rebond_policy::is_character_key(*scancode, *extended)));
                                    if typed {
                                        let now_ms = attached_at.elapsed().as_millis() as u64;
                                        if let rebond_policy::Typing::Injected { keys_per_second, first } = typing.press(now_ms) {
                                            injected = Some((keys_per_second, first));
                                        }
                                    }
                                }
                                let allowed = match injected {
                                    Some((rate, first)) => on_injected_typing(&gw, &session, &typing, rate, first).await,
                                    None => Ok(()),
                                };
                                if allowed.is_ok() {
                                    session.send(ToWorker::Uplink(bytes.to_vec())).await;
                                }
                                allowed
                            }
                        }
                    }
                    Some(Ok(Message::Text(text))) => match filter.text(text.len()) {
                        Verdict::Violation(v) => Err(UplinkEnd::Violation(v)),
                        _ => Ok(()),
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                };
                if let Err(UplinkEnd::InjectedTyping) = verdict {
                    session.stop(Some(ErrorCode::InjectedTyping));
                    session.detach(generation);
                    let _ = socket.send(Message::Binary(Downlink::Error { code: ErrorCode::InjectedTyping }.encode().into())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                if let Err(UplinkEnd::Violation(violation)) = verdict {
                    warn!(session = session.id, user = %session.user, %peer, %violation, "uplink violation: session closed");
                    gw.audit("violation", &session.user, serde_json::json!({ "session": session.id, "peer": peer.to_string(), "reason": violation.to_string() }));
                    crate::metrics::Metrics::add(&gw.metrics.uplink_violations, 1);
                    session.stop(Some(ErrorCode::ForbiddenMessage));
                    session.detach(generation);
                    let _ = socket.send(Message::Binary(Downlink::Error { code: ErrorCode::ForbiddenMessage }.encode().into())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            }
            out = rx.recv() => {
                // What else is already queued goes out with it, in one write (a frame is
                // several messages: one wake-up and one TLS flush for all of them).
                let mut batch = Vec::new();
                let mut next = out;
                let then = loop {
                    match next {
                        Some(Outgoing::Message(bytes)) => batch.push(bytes),
                        Some(Outgoing::Close(code)) => break AfterBatch::Close(code),
                        None => break AfterBatch::Gone,
                    }
                    if batch.len() == MAX_SEND_BATCH {
                        break AfterBatch::Carry;
                    }
                    match rx.try_recv() {
                        Ok(msg) => next = Some(msg),
                        Err(_) => break AfterBatch::Carry,
                    }
                };
                for bytes in &batch {
                    crate::metrics::Metrics::add(&gw.metrics.bytes_to_browsers, bytes.len() as u64);
                    crate::metrics::Metrics::add(&session.bytes_to_browser, bytes.len() as u64);
                    if Downlink::tag(bytes) == Some(Downlink::FRAME_END_TAG) {
                        if let Some(t) = key_pending.take() {
                            gw.metrics.key_to_frame(t.elapsed().as_secs_f64());
                        }
                    }
                }
                if !batch.is_empty() && !matches!(tokio::time::timeout(SEND_TIMEOUT, send_all(&mut socket, batch)).await, Ok(Ok(()))) {
                    break;
                }
                match then {
                    AfterBatch::Carry => {}
                    AfterBatch::Gone => break,
                    AfterBatch::Close(code) => {
                        if let Some(code) = code {
                            let _ = socket.send(Message::Binary(Downlink::Error { code }.encode().into())).await;
                        }
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                }
            }
        }
    }
    // The page went away: keep the session for the grace period.
    if session.detach(generation) {
        session.send(ToWorker::Detach).await;
        info!(session = session.id, %peer, "page detached; waiting for it to come back");
        let grace = Duration::from_secs(gw.config.reconnect_grace_seconds);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if !session.reattached_since(generation) && session.ended().is_none() {
                info!(session = session.id, "page did not come back: session closed");
                session.stop(Some(ErrorCode::SessionExpired));
            }
        });
    }
}
