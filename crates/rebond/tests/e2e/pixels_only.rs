//! Only input, resize, acknowledgements and keepalives go up; anything else ends
//! the session, is recorded, and touches no other session. Secrets stay in memory.

use std::time::Duration;

use futures_util::SinkExt as _;
use rebond_probe::Client;
use rebond_wire::ErrorCode;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_uplink_messages_end_only_their_session() {
    let s = Setup::tls();
    let (bystander, bystander_pw) = s.another_person();
    // Another person's session, running all along.
    let other = Client::sign_in(&options(&s.gw, &bystander, &bystander_pw)).await.unwrap().unwrap();
    let (_other, mut other_socket) = open_desktop(other).await;

    let forbidden: Vec<(&str, Message)> = vec![
        ("text message (a clipboard would be text)", Message::Text("paste: secret plans".into())),
        ("downlink type sent up", Message::Binary(vec![0x04, 0, 0, 0, 0, 8, 0, 8, 0, 1, 0x89].into())),
        ("unknown type", Message::Binary(vec![0x99, 1, 2, 3].into())),
        ("truncated key", Message::Binary(vec![0x81, 0x1e].into())),
        ("file-sized message", Message::Binary(vec![0x88; 4096].into())),
        ("scancode outside the keyboard", Message::Binary(vec![0x81, 0xe0, 0, 1].into())),
    ];
    for (what, msg) in forbidden {
        let (_client, mut socket) = s.working().await;
        socket.send(msg).await.unwrap();
        assert_eq!(end_code(&mut socket).await, Some(ErrorCode::ForbiddenMessage), "{what}");
    }
    let log = s.gw.log_text();
    assert!(log.matches("uplink violation").count() >= 6, "each violation is recorded:\n{log}");

    // The bystander's session is untouched and still live.
    other_socket.send(Message::Binary(rebond_wire::Uplink::Keepalive.encode().into())).await.unwrap();
    let (report, _) = probe(&s.gw, &bystander, &bystander_pw, None, 1).await;
    assert!(report.error.is_none(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_and_tokens_never_reach_logs_or_disk() {
    let s = Setup::nla();
    let (client, socket) = s.working().await;
    let token = client.cookie().trim_start_matches("rebond_session=").to_owned();
    assert!(token.len() >= 40);
    drop(socket);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut files = vec![s.gw.log.clone()];
    let mut stack = vec![s.gw.data.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for secret in [s.password.as_bytes(), token.as_bytes()] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret), "a secret is written in {}", file.display());
        }
    }
}

/// Typing at `interval_ms` between key events (a press every two intervals).
async fn type_at(gw: &rebond_testkit::gateway::Gateway, user: &str, password: &str, text: &str, interval_ms: u64) -> rebond_probe::ProbeReport {
    let mut opts = options(gw, user, password);
    opts.type_text = Some(text.to_owned());
    opts.key_interval_ms = interval_ms;
    opts.duration = Duration::from_secs(6);
    rebond_probe::run(opts).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread")]
async fn typing_faster_than_a_person_is_slowed_and_recorded_or_blocked() {
    // A person's pace (a key every 90 ms, 11 per second) is just typing.
    let s = Setup::tls();
    let marker = format!("/tmp/rebond-typed-{}", rebond_testkit::unique());
    let report = type_at(&s.gw, &s.user, &s.password, &format!("touch {marker}-human{{Enter}}"), 45).await;
    assert!(report.error.is_none(), "{report:?}");
    assert!(wait_for_file(std::path::Path::new(&format!("{marker}-human")), Duration::from_secs(10)).await);
    assert!(!s.gw.log_text().contains("injected typing"));

    // A paste-like burst (a key every 4 ms): slowed to a person's pace, delivered, recorded.
    let report = type_at(&s.gw, &s.user, &s.password, &format!("touch {marker}-pasted{{Enter}}"), 2).await;
    assert!(report.error.is_none(), "{report:?}");
    assert!(wait_for_file(std::path::Path::new(&format!("{marker}-pasted")), Duration::from_secs(15)).await);
    assert!(s.gw.log_text().contains("injected typing"), "{}", s.gw.log_text());
    let (_, metrics) = s.gw.get("/metrics").unwrap();
    assert!(metrics.contains("rebond_injected_typing_total 1\n"), "{metrics}");

    // Where the policy blocks it, the session ends with its own code.
    let b = Setup::tls_with(gateway_with("injected_typing = \"block\"\n"));
    let report = type_at(&b.gw, &b.user, &b.password, &"x".repeat(60), 2).await;
    assert_eq!(report.error.as_ref().map(|e| e.code.as_str()), Some("injected_typing"), "{report:?}");
    for m in [format!("{marker}-human"), format!("{marker}-pasted")] {
        let _ = std::fs::remove_file(m);
    }
}
