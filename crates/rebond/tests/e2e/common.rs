use std::path::Path;
use std::time::{Duration, Instant};

use rebond_probe::{Framebuffer, ProbeOptions, ProbeReport};
use rebond_testkit::gateway::Gateway;

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
    }
}

fn zeroize_string(s: &str) -> rebond_probe::Password {
    rebond_probe::Password::new(s.to_owned())
}

pub async fn probe(gw: &Gateway, user: &str, password: &str, type_text: Option<&str>, seconds: u64) -> (ProbeReport, Framebuffer) {
    let mut opts = options(gw, user, password);
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
