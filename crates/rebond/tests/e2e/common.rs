use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::SinkExt as _;
use rebond_probe::{Framebuffer, ProbeOptions, ProbeReport};
use rebond_testkit::gateway::Gateway;
use rebond_testkit::workstation::{Security, Shadow};
use rebond_wire::{Downlink, ErrorCode, Uplink};
use tokio_tungstenite::tungstenite::Message;

pub const EXE: &str = env!("CARGO_BIN_EXE_rebond");

pub fn gateway() -> Gateway {
    Gateway::start(Path::new(EXE), None).expect("start the gateway")
}

pub fn gateway_with(config: &str) -> Gateway {
    Gateway::start(Path::new(EXE), Some(config)).expect("start the gateway")
}

/// A fresh workstation account name and password.
pub fn account() -> (String, String) {
    let n = rebond_testkit::unique() % 100_000_000;
    (format!("rbt{n}"), format!("Pw-{n}-x"))
}

pub fn options(gw: &Gateway, user: &str, password: &str) -> ProbeOptions {
    ProbeOptions {
        url: gw.url(),
        user: user.to_owned(),
        password: zeroize_string(password),
        insecure: true,
        ca_file: None,
        type_text: None,
        duration: Duration::from_secs(1),
        screenshot: None,
        width: 1280,
        height: 800,
        language: "en-US".into(),
        key_interval_ms: 10,
        settle: Duration::ZERO,
    }
}

fn zeroize_string(s: &str) -> rebond_probe::Password {
    rebond_probe::Password::new(s.to_owned())
}

pub async fn probe(gw: &Gateway, user: &str, password: &str, type_text: Option<&str>, seconds: u64) -> (ProbeReport, Framebuffer) {
    probe_in(gw, user, password, type_text, seconds, "en-US").await
}

/// A probe whose browser speaks `language` (which sets the workstation's keyboard layout).
pub async fn probe_in(
    gw: &Gateway,
    user: &str,
    password: &str,
    type_text: Option<&str>,
    seconds: u64,
    language: &str,
) -> (ProbeReport, Framebuffer) {
    let mut opts = options(gw, user, password);
    opts.language = language.to_owned();
    opts.type_text = type_text.map(str::to_owned);
    opts.duration = Duration::from_secs(seconds);
    rebond_probe::run(opts).await.expect("the probe reaches the gateway")
}

pub async fn wait_for_file(path: &Path, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if path.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub fn error_code(report: &ProbeReport) -> Option<&str> {
    report.error.as_ref().map(|e| e.code.as_str())
}

/// Compares what the client shows with the workstation's own screen.
pub fn assert_same_picture(client_rgba: &[u8], screen_png: &Path, what: &str) {
    let (w, h, screen) = rebond_testkit::read_png(screen_png).expect("read the workstation screenshot");
    assert_eq!((w, h), (1280, 800), "{what}: workstation screen size");
    let same = rebond_testkit::same_pixels(client_rgba, &screen);
    assert!(same > 0.995, "{what}: only {:.2}% of the pixels match the workstation's screen", same * 100.0);
}

/// A shadow workstation, its account, and a gateway that routes the account to it
/// (the workstation's certificate pinned).
pub struct Setup {
    pub user: String,
    pub password: String,
    pub ws: rebond_testkit::workstation::Shadow,
    pub gw: Gateway,
}

impl Setup {
    /// NLA: the workstation knows the account from its SAM file.
    pub fn nla() -> Self {
        Self::nla_with(gateway())
    }

    pub fn nla_with(gw: Gateway) -> Self {
        let (user, password) = account();
        let ws = Shadow::start(Security::Nla { user: user.clone(), password: password.clone() }).unwrap();
        Self::routed(user, password, ws, gw)
    }

    /// TLS: the workstation checks a Linux account with PAM.
    pub fn tls() -> Self {
        Self::tls_with(gateway())
    }

    pub fn tls_with(gw: Gateway) -> Self {
        let (user, password) = account();
        rebond_testkit::ensure_account(&user, &password).unwrap();
        let ws = Shadow::start(Security::Tls).unwrap();
        Self::routed(user, password, ws, gw)
    }

    fn routed(user: String, password: String, ws: Shadow, gw: Gateway) -> Self {
        gw.add_user(&user, &password).unwrap();
        gw.route_pinned(&user, &ws.url()).unwrap();
        Self { user, password, ws, gw }
    }

    /// Another person with an account on the same workstation (TLS workstations only).
    pub fn another_person(&self) -> (String, String) {
        let (user, password) = account();
        rebond_testkit::ensure_account(&user, &password).unwrap();
        self.gw.add_user(&user, &password).unwrap();
        self.gw.route_pinned(&user, &self.ws.url()).unwrap();
        (user, password)
    }

    pub async fn sign_in(&self) -> rebond_probe::Client {
        rebond_probe::Client::sign_in(&options(&self.gw, &self.user, &self.password)).await.unwrap().unwrap()
    }

    /// Signs in, opens the session socket and waits for the first frame, as the page does.
    pub async fn working(&self) -> (rebond_probe::Client, rebond_probe::Socket) {
        open_desktop(self.sign_in().await).await
    }
}

/// Opens a signed-in client's session socket and waits for its first frame.
pub async fn open_desktop(client: rebond_probe::Client) -> (rebond_probe::Client, rebond_probe::Socket) {
    let mut socket = client.open_socket().await.unwrap();
    first_frame(&mut socket).await;
    (client, socket)
}

/// Reads until the first frame ends (acknowledging it); panics if the session ends.
pub async fn first_frame(ws: &mut rebond_probe::Socket) -> Vec<Downlink> {
    let mut seen = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), rebond_probe::next_message(ws))
            .await
            .expect("a frame within 20 s")
            .expect("a valid message")
            .expect("the socket stays open");
        match msg {
            Downlink::FrameEnd { seq } => {
                ws.send(Message::Binary(Uplink::FrameAck { seq }.encode().into())).await.unwrap();
                seen.push(msg);
                return seen;
            }
            Downlink::Error { code } => panic!("session ended: {code}"),
            other => seen.push(other),
        }
    }
}

/// Reads until the socket closes and returns the error code it ended with.
pub async fn end_code(ws: &mut rebond_probe::Socket) -> Option<ErrorCode> {
    let mut code = None;
    while let Ok(Ok(Some(m))) = tokio::time::timeout(Duration::from_secs(10), rebond_probe::next_message(ws)).await {
        if let Downlink::Error { code: c } = m {
            code = Some(c);
        }
    }
    code
}

/// Sends keys as the page would (physical keys, US positions).
pub async fn type_keys(ws: &mut rebond_probe::Socket, text: &str) {
    ws.send(Message::Binary(rebond_wire::Uplink::PointerMove { x: 640, y: 400 }.encode().into())).await.unwrap();
    for k in rebond_probe::parse_keys(text).unwrap() {
        let msg = rebond_wire::Uplink::Key { scancode: k.scancode, extended: k.extended, down: k.down };
        ws.send(Message::Binary(msg.encode().into())).await.unwrap();
    }
}

/// POSTs a sign-in as the page would and returns (status line and headers, body).
pub fn post_sign_in(gw: &Gateway, body: &serde_json::Value) -> (String, serde_json::Value) {
    let out = std::process::Command::new("curl")
        .args(["-sk", "-D", "-", "-X", "POST", "-H", "Content-Type: application/json", "--data"])
        .arg(body.to_string())
        .arg(format!("{}/api/sign-in", gw.url()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), serde_json::from_str(body).unwrap_or_default())
}

/// Opens the gateway's page and waits for its sign-in form.
pub async fn open_sign_in(page: &mut rebond_testkit::browser::Page, gw: &Gateway) {
    page.open_sign_in(&gw.url()).await.unwrap();
}

/// Types a user name and password into the page's form and submits it, as a person does.
pub async fn submit_sign_in(page: &mut rebond_testkit::browser::Page, user: &str, password: &str) {
    page.submit_sign_in(user, password).await.unwrap();
}

/// Waits until the page shows the desktop.
pub async fn wait_for_desktop(page: &mut rebond_testkit::browser::Page) {
    page.wait_for_desktop().await.unwrap();
}
