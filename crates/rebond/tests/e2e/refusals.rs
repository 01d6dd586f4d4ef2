//! Every way a session can be refused gives its own stable code.

use std::path::Path;

use rebond_testkit::workstation::{Security, Shadow};

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_unknown_user_and_empty_password() {
    let gw = gateway();
    gw.add_user("alice", "right-password").unwrap();
    gw.cli(&["route", "set", "alice", "rdp://127.0.0.1:9", "--insecure-skip-verify"], None).unwrap();
    for (user, pw, code) in [
        ("alice", "wrong-password", "bad_credentials"),
        ("nobody", "right-password", "bad_credentials"),
        ("alice", "", "password_missing"),
    ] {
        let (report, _) = probe(&gw, user, pw, None, 1).await;
        assert_eq!(error_code(&report), Some(code), "{user}/{pw:?}: {report:?}");
        assert!(!report.signed_in);
    }
    // The same refusal through the CLI, as an administrator sees it.
    let out = std::process::Command::new(EXE)
        .args(["probe", "--url", &gw.url(), "--user", "alice", "--password-stdin", "--insecure", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(b"nope\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["error"]["code"], "bad_credentials");
    assert_eq!(json["error"]["number"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn switched_off_workstation() {
    let gw = gateway();
    gw.add_user("bob", "pw-bob").unwrap();
    let port = rebond_testkit::free_port(); // nothing listens there
    gw.cli(&["route", "set", "bob", &format!("rdp://127.0.0.1:{port}"), "--insecure-skip-verify"], None).unwrap();
    let (report, _) = probe(&gw, "bob", "pw-bob", None, 1).await;
    assert!(report.signed_in);
    assert_eq!(error_code(&report), Some("workstation_unreachable"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn user_without_a_workstation() {
    let gw = gateway();
    gw.add_user("carol", "pw-carol").unwrap();
    let (report, _) = probe(&gw, "carol", "pw-carol", None, 1).await;
    assert_eq!(error_code(&report), Some("no_workstation"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn workstation_refuses_the_credentials_with_nla() {
    let (user, password) = account();
    let ws = Shadow::start(Security::Nla { user: user.clone(), password: "another-password".into() }).unwrap();
    let gw = gateway();
    gw.add_user(&user, &password).unwrap();
    gw.route_pinned(&user, &ws.url()).unwrap();
    let (report, _) = probe(&gw, &user, &password, None, 1).await;
    assert_eq!(error_code(&report), Some("workstation_refused_credentials"), "{report:?}\n{}", gw.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn workstation_refuses_the_credentials_with_tls() {
    let (user, password) = account();
    rebond_testkit::ensure_account(&user, "the-workstation-password").unwrap();
    let ws = Shadow::start(Security::Tls).unwrap();
    let gw = gateway();
    gw.add_user(&user, &password).unwrap();
    gw.route_pinned(&user, &ws.url()).unwrap();
    let (report, _) = probe(&gw, &user, &password, None, 8).await;
    assert_eq!(error_code(&report), Some("workstation_refused_credentials"), "{report:?}\n{}", gw.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn workstation_with_an_unexpected_certificate() {
    let s = Setup::nla();
    s.gw.cli(&["route", "set", &s.user, &s.ws.url(), "--pin", &"AB".repeat(32)], None).unwrap();
    let (report, _) = probe(&s.gw, &s.user, &s.password, None, 1).await;
    assert_eq!(error_code(&report), Some("workstation_certificate_untrusted"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_at_capacity() {
    let s = Setup::tls_with(gateway_with("max_sessions = 1\n"));
    let (dave, dave_pw) = s.another_person();
    let _first = s.sign_in().await;
    let (report, _) = probe(&s.gw, &dave, &dave_pw, None, 1).await;
    assert_eq!(error_code(&report), Some("gateway_at_capacity"), "{report:?}");
}

#[test]
fn invalid_configuration_is_refused_at_start_with_its_line() {
    let dir = rebond_testkit::temp_dir("badconfig");
    let path = dir.join("rebond.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:1\"\nmax_sessions = -3\n").unwrap();
    let out = std::process::Command::new(EXE)
        .args(["serve", "--config", path.to_str().unwrap(), "--data", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rebond.toml: line 2"), "{err}");
    assert!(!Path::new(&dir.join("rebond.sqlite3")).exists() || err.contains("line 2"));
}
