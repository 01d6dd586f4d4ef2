//! Several gateway nodes sharing their records in PostgreSQL.

use std::path::Path;
use std::time::{Duration, Instant};

use rebond_testkit::database::Postgres;
use rebond_testkit::gateway::{rebond, Gateway};
use rebond_testkit::workstation::{Security, Shadow, Xrdp};
use rebond_wire::ErrorCode;

use crate::common::*;

fn node(db: &Postgres, name: &str) -> Gateway {
    gateway_with(&format!("database_url = \"{}\"\nnode_name = \"{name}\"\ndrain_deadline_seconds = 1\n", db.url()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_on_one_node_takes_over_the_session_on_another() {
    let db = Postgres::start().unwrap();
    let (user, password) = account();
    let ws = Shadow::start(Security::Nla { user: user.clone(), password: password.clone() }).unwrap();
    let (a, b) = (node(&db, "node-a"), node(&db, "node-b"));
    for gw in [&a, &b] {
        gw.add_user(&user, &password).unwrap();
        gw.route_pinned(&user, &ws.url()).unwrap();
    }
    let on_a = rebond_probe::Client::sign_in(&options(&a, &user, &password)).await.unwrap().unwrap();
    let (_on_a, mut socket_a) = open_desktop(on_a).await;
    let on_b = rebond_probe::Client::sign_in(&options(&b, &user, &password)).await.unwrap().unwrap();
    let (_on_b, _socket_b) = open_desktop(on_b).await;
    assert_eq!(end_code(&mut socket_a).await, Some(ErrorCode::SessionTakenOver), "{}", a.log_text());

    // Both nodes' sessions are in the shared records.
    let out = rebond(Path::new(EXE), &["usage", "--database-url", &db.url(), "--by", "user", "--format", "json"], None).unwrap();
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["key"], user.as_str(), "{out}");
    assert_eq!(rows[0]["sessions"], 2, "{out}");
}

/// A node dies in the middle of a session; the person signs in again through another
/// node and finds the same workstation session (the same shell) again.
#[tokio::test(flavor = "multi_thread")]
async fn node_death_then_the_same_workstation_session_through_another_node() {
    let db = Postgres::start().unwrap();
    let (user, password) = account();
    let ws = Xrdp::start().unwrap();
    ws.add_account(&user, &password).unwrap();
    let (a, b) = (node(&db, "node-a"), node(&db, "node-b"));
    for gw in [&a, &b] {
        gw.add_user(&user, &password).unwrap();
        gw.cli(&["route", "set", &user, &ws.url(), "--ca", ws.ca.to_str().unwrap()], None).unwrap();
    }
    let mark = rebond_testkit::unique();
    let before = format!("/tmp/rebond-shell-{mark}-a");
    let after = format!("/tmp/rebond-shell-{mark}-b");

    let (report, _) = probe(&a, &user, &password, Some(&format!("echo $$ > {before}{{Enter}}")), 2).await;
    assert!(report.error.is_none(), "{report:?}");
    assert!(wait_for_file(Path::new(&before), Duration::from_secs(10)).await);

    let died = Instant::now();
    drop(a); // the node and its workers die at once
    let signing_in = died.elapsed();
    let (report, _) = probe(&b, &user, &password, Some(&format!("echo $$ > {after}{{Enter}}")), 2).await;
    assert!(report.error.is_none(), "{report:?}");
    // The probe's time to first frame counts from its sign-in request.
    let to_desktop = signing_in + Duration::from_millis(report.time_to_first_frame_ms.unwrap());
    eprintln!("node death to desktop again (sign-in included): {} ms", to_desktop.as_millis());
    assert!(wait_for_file(Path::new(&after), Duration::from_secs(10)).await);
    let (shell_a, shell_b) = (std::fs::read_to_string(&before).unwrap(), std::fs::read_to_string(&after).unwrap());
    assert_eq!(shell_a, shell_b, "the same shell, so the same workstation session");
    let _ = (std::fs::remove_file(&before), std::fs::remove_file(&after));
}
