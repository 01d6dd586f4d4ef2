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

    let client = s.sign_in().await;
    let mut socket = client.open_socket().await.unwrap();
    first_frame(&mut socket).await;
    let (_, metrics) = s.gw.get("/metrics").unwrap();
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
