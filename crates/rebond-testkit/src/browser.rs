//! Headless Chromium (Debian's package), driven over the DevTools protocol.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::{free_port, temp_dir, Proc};

pub struct Chromium {
    port: u16,
    /// Where Chromium runs (its DevTools port is on that host's loopback).
    host: crate::network::Host,
    pub profile: PathBuf,
    _proc: Proc,
}

type Cdp = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One tab, spoken to over its DevTools socket.
pub struct Page {
    ws: Cdp,
    next_id: u64,
}

impl Chromium {
    /// Starts Chromium headless, with a new profile, in `language`, at `width`×`height`.
    pub fn start(language: &str, width: u32, height: u32) -> anyhow::Result<Self> {
        Self::start_on(&crate::network::Host::local(), language, width, height)
    }

    /// Starts Chromium on `host` (for example the home network of a topology).
    pub fn start_on(host: &crate::network::Host, language: &str, width: u32, height: u32) -> anyhow::Result<Self> {
        Self::start_with(host, language, width, height, &[])
    }

    /// Starts Chromium with a fake microphone that plays `wav` (granted without asking)
    /// and sound allowed to play without a click.
    pub fn start_with_microphone(language: &str, width: u32, height: u32, wav: &std::path::Path) -> anyhow::Result<Self> {
        let args = [
            "--use-fake-ui-for-media-stream".to_owned(),
            "--use-fake-device-for-media-stream".to_owned(),
            format!("--use-file-for-fake-audio-capture={}", wav.display()),
            "--autoplay-policy=no-user-gesture-required".to_owned(),
        ];
        Self::start_with(&crate::network::Host::local(), language, width, height, &args)
    }

    fn start_with(host: &crate::network::Host, language: &str, width: u32, height: u32, extra: &[String]) -> anyhow::Result<Self> {
        let profile = temp_dir("chromium");
        let port = free_port();
        let exe = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or_else(|| anyhow::anyhow!("Chromium is not installed (run scripts/test)"))?;
        let mut cmd = host.command(exe);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--ignore-certificate-errors",
            "--remote-allow-origins=*",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--remote-debugging-port={port}"))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--lang={language}"))
        .args(extra)
        .arg("about:blank")
        .env("LANGUAGE", language.replace('-', "_"));
        let proc = Proc::spawn("chromium", cmd, Some(&profile.join("chromium.log")))?;
        let until = Instant::now() + Duration::from_secs(30);
        while host.connect("127.0.0.1", port).is_err() {
            anyhow::ensure!(Instant::now() < until, "Chromium's DevTools port does not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self { port, host: host.clone(), profile, _proc: proc })
    }

    /// The first tab.
    pub async fn page(&self) -> anyhow::Result<Page> {
        let until = Instant::now() + Duration::from_secs(20);
        let url = loop {
            let tabs: Value = http_get(&self.host, self.port, "/json/list").ok().and_then(|l| serde_json::from_str(&l).ok()).unwrap_or_default();
            if let Some(u) = tabs.as_array().and_then(|a| {
                a.iter().find(|t| t["type"] == "page").and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
            }) {
                break u;
            }
            anyhow::ensure!(Instant::now() < until, "Chromium shows no page");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let stream = self.host.connect("127.0.0.1", self.port)?;
        stream.set_nonblocking(true)?;
        let stream = tokio_tungstenite::MaybeTlsStream::Plain(tokio::net::TcpStream::from_std(stream)?);
        let (ws, _) = tokio_tungstenite::client_async(url, stream).await?;
        let mut page = Page { ws, next_id: 1 };
        page.call("Page.enable", json!({})).await?;
        page.call("Runtime.enable", json!({})).await?;
        Ok(page)
    }
}

/// A tiny HTTP GET for the DevTools endpoint (plain HTTP/1.1 on loopback; it
/// answers with a `Content-Length` and keeps the connection open).
fn http_get(host: &crate::network::Host, port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = host.connect("127.0.0.1", port)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "DevTools closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>()))
                .transpose()?
                .unwrap_or(0);
            if body.len() >= len {
                return Ok(body[..len].to_owned());
            }
        }
    }
}

impl Page {
    /// Calls a DevTools method and returns its result.
    pub async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.ws.send(Message::Text(json!({ "id": id, "method": method, "params": params }).to_string().into())).await?;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .map_err(|_| anyhow::anyhow!("{method}: no answer from Chromium"))?;
            let Some(Ok(Message::Text(text))) = msg else {
                anyhow::ensure!(msg.is_some(), "Chromium closed the DevTools socket");
                continue;
            };
            let v: Value = serde_json::from_str(&text)?;
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    anyhow::bail!("{method}: {e}");
                }
                return Ok(v["result"].clone());
            }
        }
    }

    /// Makes the page see this language (`navigator.languages`, `Accept-Language`),
    /// as a browser set up in that language would.
    pub async fn set_language(&mut self, language: &str) -> anyhow::Result<()> {
        let version = self.call("Browser.getVersion", json!({})).await?;
        let ua = version["userAgent"].as_str().unwrap_or("Mozilla/5.0").to_owned();
        let primary = language.split('-').next().unwrap_or(language);
        self.call("Network.enable", json!({})).await?;
        self.call(
            "Network.setUserAgentOverride",
            json!({ "userAgent": ua, "acceptLanguage": format!("{language},{primary}") }),
        )
        .await?;
        self.call("Emulation.setLocaleOverride", json!({ "locale": language })).await?;
        Ok(())
    }

    pub async fn navigate(&mut self, url: &str) -> anyhow::Result<()> {
        self.call("Page.navigate", json!({ "url": url })).await?;
        Ok(())
    }

    /// Navigates and returns Chromium's network error (`net::ERR_…`) if the page could
    /// not be loaded, `None` if something answered.
    pub async fn navigation_error(&mut self, url: &str) -> anyhow::Result<Option<String>> {
        let r = self.call("Page.navigate", json!({ "url": url })).await?;
        Ok(r["errorText"].as_str().filter(|e| !e.is_empty()).map(str::to_owned))
    }

    /// Opens the gateway's page at `url` and waits for its sign-in form.
    pub async fn open_sign_in(&mut self, url: &str) -> anyhow::Result<()> {
        self.navigate(url).await?;
        self.wait_for("!document.getElementById('sign-in').classList.contains('hidden')", Duration::from_secs(20)).await.map(drop)
    }

    /// Types a user name and password into the page's form and submits it, as a person does.
    pub async fn submit_sign_in(&mut self, user: &str, password: &str) -> anyhow::Result<()> {
        let js = format!(
            "document.getElementById('user').value = {}; document.getElementById('password').value = {}; \
             document.getElementById('sign-in').requestSubmit(); true",
            json!(user),
            json!(password)
        );
        self.eval(&js).await.map(drop)
    }

    /// Waits until the page shows the desktop.
    pub async fn wait_for_desktop(&mut self) -> anyhow::Result<()> {
        let shown = "!document.getElementById('desktop').classList.contains('hidden') && document.getElementById('screen').width";
        self.wait_for(shown, Duration::from_secs(30)).await.map(drop)
    }

    /// Evaluates JavaScript (awaiting promises) and returns its value.
    pub async fn eval(&mut self, js: &str) -> anyhow::Result<Value> {
        let r = self
            .call("Runtime.evaluate", json!({ "expression": js, "returnByValue": true, "awaitPromise": true }))
            .await?;
        if let Some(e) = r.get("exceptionDetails") {
            anyhow::bail!("JavaScript failed: {e}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `js` until it is truthy.
    pub async fn wait_for(&mut self, js: &str, timeout: Duration) -> anyhow::Result<Value> {
        let until = Instant::now() + timeout;
        loop {
            // While the page loads, the elements may not exist yet: that is "not yet".
            let v = self.eval(js).await.unwrap_or(Value::Null);
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return Ok(v);
            }
            anyhow::ensure!(Instant::now() < until, "timed out waiting for {js}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types text into the focused element as key presses (with characters).
    pub async fn insert_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.call("Input.insertText", json!({ "text": text })).await?;
        Ok(())
    }

    /// A physical key press and release, as a keyboard would send it (`code` is
    /// `KeyboardEvent.code`, `key` what the layout makes of it).
    pub async fn press(&mut self, code: &str, key: &str, modifiers: u32) -> anyhow::Result<()> {
        for kind in ["keyDown", "keyUp"] {
            let mut p = json!({ "type": kind, "code": code, "key": key, "modifiers": modifiers });
            if kind == "keyDown" && key.chars().count() == 1 {
                p["text"] = json!(key);
            }
            self.call("Input.dispatchKeyEvent", p).await?;
        }
        Ok(())
    }

    /// A mouse click at page coordinates.
    pub async fn click(&mut self, x: f64, y: f64) -> anyhow::Result<()> {
        self.call("Input.dispatchMouseEvent", json!({ "type": "mouseMoved", "x": x, "y": y })).await?;
        for kind in ["mousePressed", "mouseReleased"] {
            self.call("Input.dispatchMouseEvent", json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }))
                .await?;
        }
        Ok(())
    }

    /// A PNG of the page.
    pub async fn screenshot(&mut self) -> anyhow::Result<Vec<u8>> {
        use base64::Engine as _;
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" })).await?;
        Ok(base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap_or(""))?)
    }
}
