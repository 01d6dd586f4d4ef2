//! The web front as a browser meets it: HTTPS only, strict headers, a cookie
//! scripts cannot read, and no request or socket accepted from another site.

use rebond_testkit::gateway::Gateway;

use crate::common::*;

fn curl(args: &[&str]) -> String {
    let out = std::process::Command::new("curl").args(["-sk", "-D", "-", "-o", "/dev/null"]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
}

fn sign_in_headers(gw: &Gateway, origin: Option<&str>, content_type: &str) -> String {
    let url = format!("{}/api/sign-in", gw.url());
    let mut args = vec!["-X", "POST", "-H", content_type, "--data", r#"{"user":"erin","password":"pw-erin"}"#];
    let origin_header;
    if let Some(o) = origin {
        origin_header = format!("Origin: {o}");
        args.extend(["-H", &origin_header]);
    }
    args.push(&url);
    curl(&args)
}

#[test]
fn headers_cookies_and_origins() {
    let gw = gateway();
    gw.add_user("erin", "pw-erin").unwrap();
    gw.cli(&["route", "set", "erin", "rdp://127.0.0.1:9", "--insecure-skip-verify"], None).unwrap();

    let page = curl(&[&format!("{}/", gw.url())]);
    assert!(page.starts_with("http/1.1 200"), "{page}");
    assert!(page.contains("strict-transport-security: max-age=31536000"), "{page}");
    let csp = page.lines().find(|l| l.starts_with("content-security-policy:")).expect("a CSP");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(page.contains("x-content-type-options: nosniff"));

    // Plain HTTP is not served at all.
    let plain = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://127.0.0.1:{}/", gw.port)])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");

    // TLS 1.1 and older are refused.
    let old_tls = std::process::Command::new("curl")
        .args(["-sk", "--tls-max", "1.1", "-o", "/dev/null", &format!("{}/", gw.url())])
        .status()
        .unwrap();
    assert!(!old_tls.success(), "TLS 1.1 must be refused");

    // The session cookie: HTTPS only, invisible to scripts, never sent cross-site.
    let ok = sign_in_headers(&gw, Some(&gw.url()), "Content-Type: application/json");
    let cookie = ok.lines().find(|l| l.starts_with("set-cookie:")).expect("a session cookie");
    for flag in ["secure", "httponly", "samesite=strict", "path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }

    // Cross-site requests: refused (CSRF), and so is a form post (no JSON).
    let forged = sign_in_headers(&gw, Some("https://evil.example"), "Content-Type: application/json");
    assert!(forged.starts_with("http/1.1 403") && !forged.contains("set-cookie"), "{forged}");
    let form = sign_in_headers(&gw, Some(&gw.url()), "Content-Type: application/x-www-form-urlencoded");
    assert!(form.starts_with("http/1.1 403") && !form.contains("set-cookie"), "{form}");
    let sign_out = curl(&["-X", "POST", "-H", "Origin: https://evil.example", &format!("{}/api/sign-out", gw.url())]);
    assert!(sign_out.starts_with("http/1.1 403"), "{sign_out}");

    // A WebSocket from another site is refused before any upgrade.
    // (It offers the current protocol version: the origin alone is why it is refused.)
    let protocol = format!("Sec-WebSocket-Protocol: {}", rebond_wire::SUBPROTOCOL);
    let ws = curl(&[
        "-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
        "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "-H", &protocol,
        "-H", "Origin: https://evil.example", &format!("{}/ws", gw.url()),
    ]);
    assert!(ws.starts_with("http/1.1 403"), "{ws}");
}

/// The key a socket was given (the second message after Hello).
fn socket_key(first: &[rebond_wire::Downlink]) -> [u8; rebond_wire::SOCKET_KEY_LEN] {
    first.iter().find_map(|m| if let rebond_wire::Downlink::SocketKey { key } = m { Some(*key) } else { None }).expect("a socket key")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_token_is_bound_to_the_socket_it_authorised() {
    use rebond_wire::ErrorCode;
    let s = Setup::tls();
    let client = s.sign_in().await;
    let mut first = client.open_socket().await.unwrap();
    let key = socket_key(&first_frame(&mut first).await);

    // The cookie alone (copied to another browser, say) opens nothing while the page's socket lives.
    let mut copied = client.open_socket().await.unwrap();
    assert_eq!(end_code(&mut copied).await, Some(ErrorCode::SessionOpenElsewhere));
    let mut wrong = client.open_socket_with_key(Some([0; rebond_wire::SOCKET_KEY_LEN])).await.unwrap();
    assert_eq!(end_code(&mut wrong).await, Some(ErrorCode::SessionOpenElsewhere));
    type_keys(&mut first, "echo untouched{Enter}").await;
    first_frame(&mut first).await;

    // The page itself, back from a network drop the gateway has not noticed, gets in with its key.
    let mut back = client.open_socket_with_key(Some(key)).await.unwrap();
    let resumed = first_frame(&mut back).await;
    assert_eq!(end_code(&mut first).await, None, "the old socket is closed");
    assert_ne!(socket_key(&resumed), key, "every socket gets a new key");
    // The old key no longer opens anything while the new socket lives.
    let mut replay = client.open_socket_with_key(Some(key)).await.unwrap();
    assert_eq!(end_code(&mut replay).await, Some(ErrorCode::SessionOpenElsewhere));

    // Once the page has gone, the cookie opens the session again (a reloaded page).
    drop(back);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut reloaded = client.open_socket().await.unwrap();
    first_frame(&mut reloaded).await;

    let log = s.gw.log_text();
    assert_eq!(log.matches("second socket refused").count(), 3, "each refusal logged once:\n{log}");
    let export = s.gw.cli(&["audit", "export"], None).unwrap();
    assert_eq!(export.matches("socket_refused").count(), 3, "{export}");
}
