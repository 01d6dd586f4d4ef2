//! Sign-in with Active Directory (Samba as the domain controller, started here): every
//! directory answer has its code, the gateway stops before the domain locks an account,
//! and a person lands on the workstation the directory names, with single sign-on.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rebond_testkit::browser::Chromium;
use rebond_testkit::directory::{resolve_host, Samba, LOCKOUT_THRESHOLD, PASSWORD};
use rebond_testkit::gateway::Gateway;
use rebond_testkit::network::Host;
use rebond_testkit::pki::TestCa;
use rebond_testkit::workstation::{Security, Shadow, ShadowOptions};

use crate::common::*;

/// Whether the directory itself accepts `user`'s password (not through the gateway).
fn directory_accepts(samba: &Samba, user: &str, password: &str) -> bool {
    Command::new("ldapsearch")
        .env("LDAPTLS_CACERT", &samba.ca_file)
        .args(["-H", &format!("ldaps://{}:636", samba.ip), "-x", "-D", &format!("{user}@test.lan"), "-w", password])
        .args(["-b", "DC=test,DC=lan", "-s", "base", "(objectClass=*)", "dn"])
        .output()
        .unwrap()
        .status
        .success()
}

/// The audit log as (kind, user, detail) records.
fn audit_records(gw: &Gateway) -> Vec<(String, String, serde_json::Value)> {
    let export = gw.cli(&["audit", "export"], None).unwrap();
    export
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            let detail = serde_json::from_str(r["detail"].as_str().unwrap()).unwrap();
            (r["kind"].as_str().unwrap().to_owned(), r["user"].as_str().unwrap().to_owned(), detail)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_directory_refusal_has_its_code_and_the_throttle_stops_before_lockout() {
    let samba = Samba::start("127.0.0.2").unwrap();
    let ca = TestCa::create(&rebond_testkit::temp_dir("ws-ca"), "Workstations CA").unwrap();
    let gw = gateway_with(&samba.gateway_config(&["Rebond Users"], 3389, &ca.ca_file));

    for (user, password, code) in [
        ("carol", PASSWORD, "account_disabled"),
        ("TEST\\dave", PASSWORD, "account_expired"),
        ("erin@test.lan", PASSWORD, "password_expired"),
        ("frank", PASSWORD, "password_must_change"),
        ("grace", PASSWORD, "not_allowed_from_this_computer"),
        ("heidi", PASSWORD, "outside_logon_hours"),
        ("alice", "not-her-password", "bad_credentials"),
        ("nobody-at-all", PASSWORD, "bad_credentials"),
        ("OTHER\\alice", PASSWORD, "bad_credentials"),
        ("alice", "", "password_missing"),
        ("svc-rebond", PASSWORD, "not_in_allowed_group"),
    ] {
        let (report, _) = probe(&gw, user, password, None, 1).await;
        assert_eq!(error_code(&report), Some(code), "{user}: {report:?}");
        assert!(!report.signed_in);
    }
    // Audit records are written in the background: give the last one a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let audit = audit_records(&gw);
    for code in ["account_disabled", "account_expired", "password_expired", "password_must_change", "not_allowed_from_this_computer", "outside_logon_hours", "not_in_allowed_group", "password_missing"] {
        let n = audit.iter().filter(|(kind, _, d)| kind == "sign_in" && d["outcome"] == code).count();
        assert_eq!(n, 1, "{code} audited once: {audit:?}");
    }

    // ivan mistypes: the gateway stops him before the domain's threshold...
    let mut reached = 0;
    let wait = loop {
        let (head, body) = post_sign_in(&gw, &serde_json::json!({ "user": "ivan", "password": "wrong" }));
        match body["code"].as_str() {
            Some("bad_credentials") => reached += 1,
            Some("too_many_attempts") => {
                assert!(head.contains("retry-after:"), "{head}");
                let message = body["message"].as_str().unwrap();
                assert!(message.contains("minutes") && !message.contains("{minutes}"), "{message}");
                break body["retry_after_seconds"].as_u64().unwrap();
            }
            other => panic!("unexpected {other:?}: {body}"),
        }
        assert!(reached < LOCKOUT_THRESHOLD, "{reached} wrong passwords reached the directory");
    };
    assert!(reached >= 1 && wait > 0);
    // ...even with the right password now (the attempt does not reach the directory)...
    let (report, _) = probe(&gw, "ivan", PASSWORD, None, 1).await;
    assert_eq!(error_code(&report), Some("too_many_attempts"));
    // ...so his account is not locked: the directory still takes his password.
    assert!(directory_accepts(&samba, "ivan", PASSWORD), "the gateway locked ivan out");
    assert!(gw.log_text().contains("sign-in throttled"));

    // StartTLS on 389 reaches the directory as LDAPS does (carol's own refusal proves the bind).
    let starttls = gateway_with(
        &samba.gateway_config(&["Rebond Users"], 3389, &ca.ca_file).replace(&format!("ldaps://{}:636", samba.ip), &format!("ldap://{}:389", samba.ip)),
    );
    let (report, _) = probe(&starttls, "carol", PASSWORD, None, 1).await;
    assert_eq!(error_code(&report), Some("account_disabled"), "StartTLS reaches the directory: {report:?}");

    // A directory that does not answer is "unavailable", never "wrong password".
    let down = gateway_with(
        &samba.gateway_config(&["Rebond Users"], 3389, &ca.ca_file).replace(&format!("ldaps://{}:636", samba.ip), "ldaps://127.0.0.9:636"),
    );
    let (report, _) = probe(&down, "alice", PASSWORD, None, 1).await;
    assert_eq!(error_code(&report), Some("sign_in_unavailable"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_user_lands_on_their_own_workstation_with_single_sign_on() {
    let samba = Samba::start("127.0.0.3").unwrap();
    // Two domain-joined PCs with certificates from the company CA, found by name.
    let ca = TestCa::create(&rebond_testkit::temp_dir("ws-ca"), "Workstations CA").unwrap();
    let port = rebond_testkit::free_port();
    let mut workstations = Vec::new();
    for (user, ip) in [("alice", "127.0.0.21"), ("bob", "127.0.0.22")] {
        let name = format!("ws-{user}.test.lan");
        resolve_host(&name, ip).unwrap();
        let certificate = ca.issue(&format!("ws-{user}"), &[&format!("DNS:{name}")]).unwrap();
        let host = Host { netns: None, ip: ip.into() };
        let security = Security::NlaInDomain { domain: "TEST".into(), user: user.into(), password: PASSWORD.into() };
        let options = ShadowOptions { port: Some(port), certificate: Some(certificate) };
        workstations.push(Shadow::start_with(&host, security, None, options).unwrap());
    }
    // The first domain controller is down: the second answers.
    let config = samba.gateway_config(&["Rebond Users"], port, &ca.ca_file).replace(
        &format!("servers = [\"ldaps://{}:636\"]", samba.ip),
        &format!("servers = [\"ldaps://127.0.0.9:636\", \"ldaps://{}:636\"]", samba.ip),
    ) + "[[policies]]\nname = \"call-centre\"\ngroups = [\"Call Centre\"]\nspeaker = true\nmicrophone = true\nidle_timeout_seconds = 900\n";
    let config_file = rebond_testkit::temp_dir("ad-config").join("rebond.toml");
    std::fs::write(&config_file, &config).unwrap();
    let gw = gateway_with(&config);

    // alice (three groups deep in Rebond Users) types a command on her own PC: no
    // password asked by the workstation, no route configured in Rebond.
    let marker = format!("/tmp/rebond-ad-{}", rebond_testkit::unique());
    let (report, _) = probe(&gw, "TEST\\alice", PASSWORD, Some(&format!("touch {marker}{{Enter}}")), 4).await;
    assert!(report.error.is_none(), "{report:?}\n{}", gw.log_text());
    assert!(wait_for_file(Path::new(&marker), Duration::from_secs(10)).await, "the keys reached alice's workstation");
    let _ = std::fs::remove_file(&marker);
    let log = gw.log_text();
    assert!(log.contains(&format!("user=alice session=1 workstation=rdp://ws-alice.test.lan:{port}")), "{log}");
    let (report, _) = probe(&gw, "bob@test.lan", PASSWORD, None, 1).await;
    assert!(report.error.is_none(), "{report:?}");
    assert!(gw.log_text().contains(&format!("user=bob session=2 workstation=rdp://ws-bob.test.lan:{port}")));
    let audit = audit_records(&gw);
    let policy_of = |who: &str| audit.iter().find(|(k, u, _)| k == "session_start" && u == who).map(|(_, _, d)| d["policy"].clone());
    assert_eq!(policy_of("alice"), Some("call-centre".into()), "alice's policy comes from a nested group");
    assert_eq!(policy_of("bob"), Some("default".into()));

    // Asking for someone else's PC is refused and recorded.
    let (_, body) = post_sign_in(&gw, &serde_json::json!({ "user": "alice", "password": PASSWORD, "workstation": format!("rdp://ws-bob.test.lan:{port}") }));
    assert_eq!(body["code"], "workstation_not_yours", "{body}");
    // The gateway writes the record as it answers: give the write a moment.
    let recorded = || {
        audit_records(&gw).iter().any(|(k, u, d)| k == "route_violation" && u == "alice" && d["asked"].as_str().unwrap().contains("ws-bob"))
    };
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !recorded() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recorded());

    // The administrator's check tells the whole story for alice, and what is wrong for others.
    let check = |user: &str| {
        let out = Command::new(EXE).args(["check", "--config"]).arg(&config_file).args(["--data"]).arg(&gw.data).args(["--user", user]).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, text) = check("alice@test.lan");
    assert!(ok, "{text}");
    for expected in ["certificate is trusted", "bind accepted", "lockout policy: 5 bad passwords", "Call Centre Night", "policy: call-centre", &format!("rdp://ws-alice.test.lan:{port}"), "workstation answers RDP"] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    let (ok, text) = check("nobody-at-all");
    assert!(!ok && text.contains("FAIL  no user nobody-at-all"), "{text}");
    let (ok, text) = check("svc-rebond");
    assert!(!ok && text.contains("none of the allowed groups"), "{text}");

    // The real page: a directory account signs in and sees its workstation's desktop.
    let chromium = Chromium::start("en-US", 1280, 800).unwrap();
    let mut page = chromium.page().await.unwrap();
    open_sign_in(&mut page, &gw).await;
    submit_sign_in(&mut page, "bob@test.lan", PASSWORD).await;
    wait_for_desktop(&mut page).await;
    assert_eq!(page.eval("document.getElementById('screen').width").await.unwrap(), 1280);
    drop(workstations);
}
