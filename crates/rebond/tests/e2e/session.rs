//! A person works on their own workstation through the gateway.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::SinkExt as _;
use rebond_probe::{next_message, Client};
use rebond_testkit::workstation::{Security, Shadow, Xrdp};
use rebond_wire::{Downlink, ErrorCode, Uplink};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// Signs in, receives the desktop, types a command that writes a file, finds the file,
/// and checks that the picture equals the workstation's own screen.
async fn works_on(gw: &rebond_testkit::gateway::Gateway, user: &str, password: &str, screen: Option<&rebond_testkit::workstation::Display>) {
    let marker = PathBuf::from(format!("/tmp/rebond-e2e-{}", rebond_testkit::unique()));
    let command = format!("touch {}{{Enter}}", marker.display());
    let (report, fb) = probe(gw, user, password, Some(&command), 2).await;
    assert_eq!(report.error.as_ref().map(|e| e.code.clone()), None, "{report:?}\n{}", gw.log_text());
    assert_eq!((report.desktop_width, report.desktop_height), (1280, 800));
    assert!(report.time_to_first_frame_ms.is_some() && report.frames >= 1, "{report:?}");
    assert!(wait_for_file(&marker, Duration::from_secs(10)).await, "typed command did not run: {report:?}");
    let _ = std::fs::remove_file(&marker);
    if let Some(display) = screen {
        // The terminal now shows the command; give the last frame a moment, then compare.
        let shot = std::env::temp_dir().join(format!("rebond-screen-{}.png", rebond_testkit::unique()));
        let (report2, fb2) = probe(gw, user, password, None, 1).await;
        assert!(report2.error.is_none(), "{report2:?}");
        display.screenshot(&shot).unwrap();
        assert_same_picture(&fb2.rgba, &shot, "shadow desktop");
        let _ = std::fs::remove_file(&shot);
        let _ = fb;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_workstation_with_tls() {
    let (user, password) = account();
    rebond_testkit::ensure_account(&user, &password).unwrap();
    let ws = Shadow::start(Security::Tls).unwrap();
    let gw = gateway();
    gw.add_user(&user, &password).unwrap();
    gw.route_pinned(&user, &ws.url()).unwrap();
    works_on(&gw, &user, &password, Some(&ws.display)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_workstation_with_nla_single_sign_on() {
    let (user, password) = account();
    let ws = Shadow::start(Security::Nla { user: user.clone(), password: password.clone() }).unwrap();
    let gw = gateway();
    gw.add_user(&user, &password).unwrap();
    gw.route_pinned(&user, &ws.url()).unwrap();
    works_on(&gw, &user, &password, None).await;
    assert!(gw.log_text().contains("nla=true"), "the session used NLA");
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
}

fn kind(m: &Downlink) -> String {
    match m {
        Downlink::Tile { x, y, .. } => format!("Tile@{x},{y}"),
        other => format!("{other:?}"),
    }
}

async fn until_first_frame(ws: &mut rebond_probe::Socket) -> Vec<Downlink> {
    let mut seen = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), next_message(ws))
            .await
            .expect("a frame within 20 s")
            .expect("a valid message")
            .expect("the socket stays open");
        let end = matches!(msg, Downlink::FrameEnd { .. });
        if let Downlink::FrameEnd { seq } = msg {
            ws.send(Message::Binary(Uplink::FrameAck { seq }.encode().into())).await.unwrap();
        }
        if let Downlink::Error { code } = msg {
            panic!("session ended: {code}");
        }
        seen.push(msg);
        if end {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn network_drop_resumes_the_same_session_without_password() {
    let (user, password) = account();
    let ws = Shadow::start(Security::Nla { user: user.clone(), password: password.clone() }).unwrap();
    let gw = gateway();
    gw.add_user(&user, &password).unwrap();
    gw.route_pinned(&user, &ws.url()).unwrap();
    let client = Client::sign_in(&options(&gw, &user, &password)).await.unwrap().unwrap();

    let mut socket = client.open_socket().await.unwrap();
    let first = until_first_frame(&mut socket).await;
    assert!(matches!(first[0], Downlink::Hello { version: 1 }));
    drop(socket); // the network drops

    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = client.open_socket().await.unwrap();
    let resumed = until_first_frame(&mut again).await;
    let kinds: Vec<String> = resumed.iter().map(kind).collect();
    assert!(resumed.iter().any(|m| matches!(m, Downlink::DesktopSize { width: 1280, height: 800 })), "{kinds:?}");
    let tiles = resumed.iter().filter(|m| matches!(m, Downlink::Tile { .. })).count();
    assert!(tiles > 0, "the whole picture is sent again");
    let log = gw.log_text();
    assert_eq!(log.matches("bounce worker started").count(), 1, "same worker, same RDP session:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn second_sign_in_takes_the_session_over() {
    let (user, password) = account();
    let ws = Shadow::start(Security::Nla { user: user.clone(), password: password.clone() }).unwrap();
    let gw = gateway();
    gw.add_user(&user, &password).unwrap();
    gw.route_pinned(&user, &ws.url()).unwrap();
    let first = Client::sign_in(&options(&gw, &user, &password)).await.unwrap().unwrap();
    let mut first_socket = first.open_socket().await.unwrap();
    until_first_frame(&mut first_socket).await;

    let second = Client::sign_in(&options(&gw, &user, &password)).await.unwrap().unwrap();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), next_message(&mut first_socket)).await.unwrap().unwrap() {
            Some(Downlink::Error { code }) => break code,
            Some(_) => continue,
            None => panic!("closed without a reason"),
        }
    };
    assert_eq!(ended, ErrorCode::SessionTakenOver);
    let mut second_socket = second.open_socket().await.unwrap();
    until_first_frame(&mut second_socket).await;
    // The first page's cookie no longer opens anything.
    let mut stale = first.open_socket().await.unwrap();
    let mut code = None;
    while let Some(m) = next_message(&mut stale).await.unwrap() {
        if let Downlink::Error { code: c } = m {
            code = Some(c);
        }
    }
    assert_eq!(code, Some(ErrorCode::SessionTakenOver));
}
