//! Running a node: health, readiness, metrics, and a drain that cuts nobody off
//! before its deadline.

use std::time::Duration;

use rebond_wire::{Downlink, ErrorCode, Notice};

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn health_metrics_and_drain() {
    let mut s = Setup::nla_with(gateway_with("drain_deadline_seconds = 4\n"));
    assert_eq!(s.gw.get("/healthz").unwrap(), (200, "ok".into()));
    assert_eq!(s.gw.get("/readyz").unwrap(), (200, "ready".into()));

    let (_client, mut socket) = s.working().await;
    // A key typed and its echo drawn: one key-to-frame latency observed.
    {
        use futures_util::SinkExt as _;
        use tokio_tungstenite::tungstenite::Message;
        for down in [true, false] {
            let key = rebond_wire::Uplink::Key { scancode: 0x1e, extended: false, down };
            socket.send(Message::Binary(key.encode().into())).await.unwrap();
        }
        first_frame(&mut socket).await;
    }
    let (_, metrics) = s.gw.get("/metrics").unwrap();
    assert!(metrics.contains("rebond_key_to_frame_seconds_count 1\n"), "{metrics}");
    assert!(metrics.contains("rebond_sessions 1\n"), "{metrics}");
    assert!(metrics.contains("rebond_sign_ins_total{outcome=\"accepted\"} 1\n"), "{metrics}");
    let bytes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rebond_bytes_to_browsers_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(bytes > 1000, "{metrics}");

    // Drain: the page is told, nobody new gets in, the session lasts until the deadline.
    let data = s.gw.data.display().to_string();
    rebond_testkit::gateway::rebond(std::path::Path::new(EXE), &["drain", "--data", &data], None).unwrap();
    let started = std::time::Instant::now();
    let notice = loop {
        match tokio::time::timeout(Duration::from_secs(10), rebond_probe::next_message(&mut socket)).await.unwrap().unwrap() {
            Some(Downlink::Notice { notice, seconds }) => break (notice, seconds),
            Some(_) => continue,
            None => panic!("closed before the notice"),
        }
    };
    assert_eq!(notice, (Notice::Draining, 4));
    assert_eq!(s.gw.get("/readyz").unwrap().0, 503);
    let (report, _) = probe(&s.gw, &s.user, &s.password, None, 1).await;
    assert_eq!(error_code(&report), Some("gateway_shutting_down"), "{report:?}");
    assert_eq!(end_code(&mut socket).await, Some(ErrorCode::GatewayShuttingDown));
    assert!(started.elapsed() >= Duration::from_secs(3), "the session was kept until the deadline");
    for _ in 0..100 {
        if s.gw.exited() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.gw.exited(), "the gateway exits after the drain");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_pages_are_warned_then_disconnected_and_can_resume() {
    use futures_util::SinkExt as _;
    let s = Setup::nla_with(gateway_with("idle_timeout_seconds = 4\n"));
    let (_client, mut socket) = s.working().await;
    // Moving the mouse keeps the session.
    for i in 0..6u16 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mv = rebond_wire::Uplink::PointerMove { x: 100 + i, y: 100 };
        socket.send(tokio_tungstenite::tungstenite::Message::Binary(mv.encode().into())).await.unwrap();
    }
    // Then nothing: a warning, then the page is disconnected.
    let mut warned = None;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), rebond_probe::next_message(&mut socket)).await.unwrap().unwrap() {
            Some(Downlink::Notice { notice: Notice::IdleWarning, seconds }) => warned = Some(seconds),
            Some(Downlink::Error { code }) => break code,
            Some(_) => {}
            None => panic!("closed without a reason"),
        }
    };
    assert_eq!(code, ErrorCode::Idle);
    assert!(matches!(warned, Some(1..=2)), "warned before: {warned:?}");
    // Signing in again works (the workstation kept its own session).
    let (report, _) = probe(&s.gw, &s.user, &s.password, None, 1).await;
    assert!(report.error.is_none(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_is_metered_exactly_and_kept_on_disk() {
    let mut s = Setup::nla_with(gateway_with("drain_deadline_seconds = 1\n"));
    s.gw.add_user_in(&s.user, &s.password, &["call-centre", "sales"]).unwrap();
    let (report, _) = probe(&s.gw, &s.user, &s.password, Some("ls{Enter}"), 3).await;
    assert!(report.error.is_none(), "{report:?}");
    assert!(s.gw.terminate(), "the gateway stops on SIGTERM");

    let data = s.gw.data.display().to_string();
    let out = rebond_testkit::gateway::rebond(
        std::path::Path::new(EXE),
        &["usage", "--data", &data, "--by", "user", "--format", "json"],
        None,
    )
    .unwrap();
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = &rows[0];
    assert_eq!(row["key"], s.user.as_str(), "{out}");
    assert_eq!(row["sessions"], 1);
    let metered = row["bytes_to_browser"].as_u64().unwrap();
    // The gateway meters what it relays from the worker; the probe also counts the
    // gateway's own few bytes: hello (3), socket key (17), sound settings (7), the
    // current stage (2).
    assert!(metered <= report.bytes_received && report.bytes_received - metered <= 29, "{metered} vs {report:?}");
    assert!(row["active_minutes"].as_f64().unwrap() > 0.0, "{out}");
    let csv = rebond_testkit::gateway::rebond(std::path::Path::new(EXE), &["usage", "--data", &data, "--by", "day", "--format", "csv"], None).unwrap();
    assert!(csv.starts_with("day,sessions,active_minutes,idle_minutes,bytes_to_browser,bytes_from_browser\n"), "{csv}");
    let by_group = rebond_testkit::gateway::rebond(std::path::Path::new(EXE), &["usage", "--data", &data, "--by", "group", "--format", "csv"], None).unwrap();
    let groups: Vec<&str> = by_group.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(groups, vec!["call-centre", "sales"], "{by_group}");
}
