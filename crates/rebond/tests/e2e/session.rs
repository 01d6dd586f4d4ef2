//! A person works on their own workstation through the gateway.

use std::path::PathBuf;
use std::time::Duration;

use rebond_testkit::gateway::Gateway;
use rebond_testkit::workstation::{Display, Xrdp};
use rebond_wire::{Downlink, ErrorCode};

use crate::common::*;

/// Signs in, receives the desktop, types a command that writes a file, finds the file,
/// and (given the workstation's screen) checks that the picture equals it.
async fn works_on(gw: &Gateway, user: &str, password: &str, screen: Option<&Display>) {
    let marker = PathBuf::from(format!("/tmp/rebond-e2e-{}", rebond_testkit::unique()));
    let command = format!("touch {}{{Enter}}", marker.display());
    let (report, _) = probe(gw, user, password, Some(&command), 2).await;
    assert_eq!(report.error.as_ref().map(|e| e.code.clone()), None, "{report:?}\n{}", gw.log_text());
    assert_eq!((report.desktop_width, report.desktop_height), (1280, 800));
    assert!(report.time_to_first_frame_ms.is_some() && report.frames >= 1, "{report:?}");
    assert!(wait_for_file(&marker, Duration::from_secs(10)).await, "typed command did not run: {report:?}");
    let _ = std::fs::remove_file(&marker);
    if let Some(display) = screen {
        let shot = std::env::temp_dir().join(format!("rebond-screen-{}.png", rebond_testkit::unique()));
        let (report, fb) = probe(gw, user, password, None, 1).await;
        assert!(report.error.is_none(), "{report:?}");
        display.screenshot(&shot).unwrap();
        assert_same_picture(&fb.rgba, &shot, "desktop seen through the gateway");
        let _ = std::fs::remove_file(&shot);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_workstation_with_tls() {
    let s = Setup::tls();
    works_on(&s.gw, &s.user, &s.password, Some(&s.ws.display)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_workstation_with_nla_single_sign_on() {
    let s = Setup::nla();
    works_on(&s.gw, &s.user, &s.password, None).await;
    assert!(s.gw.log_text().contains("nla=true"), "the session used NLA");
}

#[tokio::test(flavor = "multi_thread")]
async fn xrdp_workstation_verified_by_its_ca() {
    let (user, password) = account();
    let ws = Xrdp::start().unwrap();
    ws.add_account(&user, &password).unwrap();
    let gw = gateway();
    gw.add_user(&user, &password).unwrap();
    gw.cli(&["route", "set", &user, &ws.url(), "--ca", ws.ca.to_str().unwrap()], None).unwrap();
    works_on(&gw, &user, &password, None).await;
    let (report, _) = probe(&gw, &user, &password, None, 1).await;
    assert!(report.pointer_shapes >= 1, "the workstation's pointer shape reaches the browser: {report:?}");

    // A French browser gets an AZERTY keyboard: the physical keys Q A W Z type a q z w.
    let (french, french_pw) = account();
    ws.add_account(&french, &french_pw).unwrap();
    gw.add_user(&french, &french_pw).unwrap();
    gw.cli(&["route", "set", &french, &ws.url(), "--ca", ws.ca.to_str().unwrap()], None).unwrap();
    for f in ["/tmp/waqz", "/tmp/zqaw"] {
        let _ = std::fs::remove_file(f);
    }
    // Let the new session's terminal start, then type into it.
    let (report, _) = probe_in(&gw, &french, &french_pw, None, 2, "fr-FR").await;
    assert!(report.error.is_none(), "{report:?}");
    let (report, _) = probe_in(&gw, &french, &french_pw, Some("touch zqaw{Enter}"), 3, "fr-FR").await;
    assert!(report.error.is_none(), "{report:?}");
    assert!(wait_for_file(std::path::Path::new("/tmp/waqz"), Duration::from_secs(10)).await, "AZERTY layout applied");
    assert!(!std::path::Path::new("/tmp/zqaw").exists());
    let _ = std::fs::remove_file("/tmp/waqz");

    // Closing the session on the workstation ends it for the person, with its own code.
    let (report, _) = probe(&gw, &user, &password, Some("exit{Enter}"), 10).await;
    assert_eq!(error_code(&report), Some("session_ended_at_workstation"), "{report:?}\n{}", gw.log_text());
}

fn kind(m: &Downlink) -> String {
    match m {
        Downlink::Tile { x, y, .. } => format!("Tile@{x},{y}"),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn network_drop_resumes_the_same_session_without_password() {
    let s = Setup::nla();
    let client = s.sign_in().await;
    let mut socket = client.open_socket().await.unwrap();
    let first = first_frame(&mut socket).await;
    assert!(matches!(first[0], Downlink::Hello { version: rebond_wire::PROTOCOL_VERSION }));
    let Downlink::SocketKey { key } = first[1] else { panic!("{first:?}") };
    drop(socket); // the network drops

    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = client.open_socket_with_key(Some(key)).await.unwrap();
    let resumed = first_frame(&mut again).await;
    let kinds: Vec<String> = resumed.iter().map(kind).collect();
    assert!(matches!(resumed[2], Downlink::SoundSettings { speaker: false, microphone: false, .. }), "{kinds:?}");
    assert!(matches!(resumed[3], Downlink::DesktopSize { width: 1280, height: 800 }), "{kinds:?}");
    assert!(resumed.iter().any(|m| matches!(m, Downlink::Tile { .. })), "the whole picture is sent again: {kinds:?}");
    let log = s.gw.log_text();
    assert_eq!(log.matches("bounce worker started").count(), 1, "same worker, same RDP session:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn second_sign_in_takes_the_session_over() {
    let s = Setup::nla();
    let (first, mut first_socket) = s.working().await;

    let second = s.sign_in().await;
    assert_eq!(end_code(&mut first_socket).await, Some(ErrorCode::SessionTakenOver));
    let mut second_socket = second.open_socket().await.unwrap();
    first_frame(&mut second_socket).await;
    // The first page's cookie no longer opens anything.
    let mut stale = first.open_socket().await.unwrap();
    assert_eq!(end_code(&mut stale).await, Some(ErrorCode::SessionTakenOver));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_page_gets_the_latest_picture_not_a_backlog() {
    let s = Setup::nla();
    let (_client, mut socket) = s.working().await;
    // The terminal prints as fast as it can; the page stops acknowledging frames.
    type_keys(&mut socket, "while true; do ls -lR /usr; done{Enter}").await;
    let mut unacked = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Ok(Some(m))) = tokio::time::timeout_at(until, rebond_probe::next_message(&mut socket)).await {
        if let Downlink::FrameEnd { seq } = m {
            unacked.push(seq);
        }
    }
    assert!(!unacked.is_empty() && unacked.len() <= 2, "at most two frames in flight, got {unacked:?}");
    // The page catches up: frames flow again, and the next one carries the latest tiles.
    use futures_util::SinkExt as _;
    let last = *unacked.last().unwrap();
    socket
        .send(tokio_tungstenite::tungstenite::Message::Binary(rebond_wire::Uplink::FrameAck { seq: last }.encode().into()))
        .await
        .unwrap();
    let more = first_frame(&mut socket).await;
    assert!(more.iter().any(|m| matches!(m, Downlink::FrameEnd { seq } if *seq > last)));
    type_keys(&mut socket, "{Ctrl+c}").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_worker_ends_only_its_own_session() {
    let s = Setup::tls();
    let (other, other_pw) = s.another_person();
    let bystander = rebond_probe::Client::sign_in(&options(&s.gw, &other, &other_pw)).await.unwrap().unwrap();
    let mut bystander_socket = bystander.open_socket().await.unwrap();
    first_frame(&mut bystander_socket).await;

    let (_victim, mut socket) = s.working().await;
    let log = s.gw.log_text();
    let line = log.lines().rfind(|l| l.contains("bounce worker started") && l.contains(&s.user)).unwrap();
    let pid = line.split("pid=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert!(std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    assert_eq!(end_code(&mut socket).await, Some(ErrorCode::WorkerFailed));

    // The other person carries on, and the victim can sign in again.
    let (report, _) = probe(&s.gw, &other, &other_pw, None, 1).await;
    assert!(report.error.is_none(), "{report:?}");
    let (report, _) = probe(&s.gw, &s.user, &s.password, None, 1).await;
    assert!(report.error.is_none(), "{report:?}");
}
