//! The bounce worker is contained: it runs as an unprivileged account with limits,
//! and a worker that tries what it never does is stopped and reported, while the
//! gateway and the other sessions carry on.

use std::path::Path;
use std::time::{Duration, Instant};

use rebond_testkit::gateway::Gateway;
use rebond_wire::{Downlink, ErrorCode};

use crate::common::*;

/// The worker process of `user`'s newest session, from the gateway's log.
fn worker_pid(gw: &Gateway, user: &str) -> String {
    let log = gw.log_text();
    let line = log.lines().rfind(|l| l.contains("bounce worker started") && l.contains(user)).unwrap();
    line.split("pid=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned()
}

fn proc_field(pid: &str, file: &str, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    text.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in {text}")).to_owned()
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_breaks_its_sandbox_is_stopped_and_reported() {
    // Spawning a process and opening a connection kill the worker (opening a file only
    // fails: the unit tests in rebond-worker's sandbox prove that one).
    for action in ["spawn", "connect"] {
        let (victim, victim_password) = account();
        let fault = format!("{victim}:{action}");
        let gw = Gateway::start_with_env(Path::new(EXE), None, &[(rebond_worker::TEST_FAULT_VAR, &fault)]).unwrap();
        let s = Setup::tls_with(gw);
        rebond_testkit::ensure_account(&victim, &victim_password).unwrap();
        s.gw.add_user(&victim, &victim_password).unwrap();
        s.gw.route_pinned(&victim, &s.ws.url()).unwrap();

        // A bystander works; their worker is confined as configured.
        let (_client, mut socket) = s.working().await;
        let pid = worker_pid(&s.gw, &s.user);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert!(proc_field(&pid, "status", "Uid:").contains("65534"), "worker runs as nobody");
        }
        assert_eq!(proc_field(&pid, "status", "NoNewPrivs:"), "NoNewPrivs:\t1");
        assert_eq!(proc_field(&pid, "status", "Seccomp:"), "Seccomp:\t2");
        assert!(proc_field(&pid, "limits", "Max address space").contains("1073741824"));
        assert!(proc_field(&pid, "limits", "Max core file size").contains(" 0 "));
        // A CPU quota of one core, where this machine has a cgroup CPU controller.
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let quota = if let Some(line) = cgroups.lines().find(|l| l.contains(":cpu:") || l.contains(":cpu,")) {
            let dir = line.rsplit(':').next().unwrap();
            std::fs::read_to_string(format!("/sys/fs/cgroup/cpu{dir}/cpu.cfs_quota_us")).ok()
        } else {
            None
        };
        let v2_quota = cgroups.lines().find(|l| l.starts_with("0::/rebond-workers/")).and_then(|l| std::fs::read_to_string(format!("/sys/fs/cgroup{}/cpu.max", &l[3..])).ok());
        let log = s.gw.log_text();
        if log.contains("each bounce worker gets a CPU quota") {
            let quota = quota.or(v2_quota).unwrap_or_else(|| panic!("no quota for the worker: {cgroups}"));
            assert!(quota.starts_with("100000"), "one core: {quota}");
        } else {
            assert!(log.contains("bounce workers get no CPU quota here"), "{log}");
        }

        // The victim's worker tries the forbidden action once connected: it is killed.
        let (report, _) = probe(&s.gw, &victim, &victim_password, None, 1).await;
        assert_eq!(error_code(&report), Some(ErrorCode::WorkerFailed.name()), "{action}: {report:?}");
        let stopped = "bounce worker stopped by its sandbox";
        wait_for("the log line", || s.gw.log_text().contains(stopped)).await;
        assert_eq!(s.gw.log_text().matches(stopped).count(), 1, "logged once");
        let (_, metrics) = s.gw.get("/metrics").unwrap();
        assert!(metrics.contains("rebond_sandbox_violations_total 1"), "{metrics}");
        wait_for("the audit record", || {
            let export = s.gw.cli(&["audit", "export"], None).unwrap();
            export.lines().any(|l| l.contains("sandbox_violation") && l.contains(&victim))
        })
        .await;

        // The bystander carries on: typing still changes the picture.
        type_keys(&mut socket, "echo still here{Enter}").await;
        let frame = first_frame(&mut socket).await;
        assert!(frame.iter().any(|m| matches!(m, Downlink::FrameEnd { .. })));
        assert!(s.gw.log_text().lines().filter(|l| l.contains("ended without a reason")).count() == 0);
    }
}
