//! The audit log holds up: every sign-in, session, violation and administrator
//! action is chained; deletion or edition is detected; it exports to JSON lines and syslog.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures_util::SinkExt as _;
use rebond_testkit::gateway::rebond;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

fn audit(data: &str, args: &[&str]) -> std::process::Output {
    Command::new(EXE).arg("audit").args(args).args(["--data", data]).output().unwrap()
}

fn sqlite(db: &Path, sql: &str) {
    let st = Command::new("sqlite3").arg(db).arg(sql).status().unwrap();
    assert!(st.success(), "{sql}");
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_log_is_complete_chained_and_exported() {
    let mut s = Setup::tls_with(gateway_with("drain_deadline_seconds = 1\n"));
    let (report, _) = probe(&s.gw, &s.user, "not-the-password", None, 1).await;
    assert_eq!(error_code(&report), Some("bad_credentials"));
    let (report, _) = probe(&s.gw, &s.user, &s.password, None, 1).await;
    assert!(report.error.is_none(), "{report:?}");
    let (_client, mut socket) = s.working().await;
    socket.send(Message::Text("clipboard: secret".into())).await.unwrap();
    end_code(&mut socket).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(s.gw.terminate());

    let data = s.gw.data.display().to_string();
    let verify = audit(&data, &["verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("the chain is intact"));

    let lines = rebond(Path::new(EXE), &["audit", "export", "--data", &data], None).unwrap();
    let records: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    for kind in ["admin", "sign_in", "session_start", "session_end", "violation"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let outcomes: Vec<String> = records
        .iter()
        .filter(|r| r["kind"] == "sign_in")
        .map(|r| serde_json::from_str::<serde_json::Value>(r["detail"].as_str().unwrap()).unwrap()["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert!(outcomes.contains(&"bad_credentials".to_owned()) && outcomes.contains(&"accepted".to_owned()), "{outcomes:?}");
    assert!(!lines.contains(&s.password), "no password in the audit log");

    // To syslog.
    let socket_path = s.gw.data.join("syslog.sock");
    let syslog = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    syslog.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let out = audit(&data, &["export", "--syslog", socket_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut buf = [0u8; 4096];
    let n = syslog.recv(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..n]);
    assert!(first.starts_with("<37>1 ") && first.contains(" rebond - audit - {\"seq\":1,"), "{first}");

    // Edited, then deleted: both detected.
    let db = s.gw.data.join("rebond.sqlite3");
    sqlite(&db, "UPDATE audit SET username = 'mallory' WHERE seq = 2");
    let out = audit(&data, &["verify"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("record 2 was altered"), "{}", String::from_utf8_lossy(&out.stdout));
    sqlite(&db, "DELETE FROM audit WHERE seq = 2");
    let out = audit(&data, &["verify"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("record 2 is missing"), "{}", String::from_utf8_lossy(&out.stdout));
}
