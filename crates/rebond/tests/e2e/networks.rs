//! Three networks, as deployed: home (the person's PC), dmz (the gateway), office
//! (the workstations). The desktop works from home, in the real page in Chromium and
//! with the probe; nothing at home, the browser included, reaches the office.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rebond_testkit::browser::Chromium;
use rebond_testkit::gateway::Gateway;
use rebond_testkit::network::Topology;
use rebond_testkit::workstation::{Security, Shadow};

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn home_reaches_only_the_gateway_and_the_desktop_works() {
    let net = Topology::create().unwrap();
    let (user, password) = account();
    let ws = Shadow::start_on(&net.office, Security::Nla { user: user.clone(), password: password.clone() }, None).unwrap();
    let gw = Gateway::start_on(&net.dmz_front, Path::new(EXE), None).unwrap();
    gw.add_user(&user, &password).unwrap();
    gw.route_pinned_from(&net.dmz_back, &user, &ws.url()).unwrap();

    // Isolation: home sees the gateway's HTTPS port and nothing else.
    assert!(net.home.can_connect(&net.dmz_front.ip, gw.port), "home reaches the gateway");
    assert!(!net.home.can_connect(&net.office.ip, ws.port), "home must not reach the workstation");
    assert!(!net.home.can_connect(&net.dmz_back.ip, gw.port), "home must not reach the gateway's office side");
    assert!(net.dmz_back.can_connect(&net.office.ip, ws.port), "the gateway reaches the office");
    assert!(!net.office.can_connect(&net.home.ip, 22) && !net.office.can_connect(&net.home.ip, gw.port));

    // The desktop, from home: sign in, type a command that runs on the workstation.
    let marker = format!("/tmp/rebond-home-{}", rebond_testkit::unique());
    let mut probe = net.home.command(EXE);
    probe
        .args(["probe", "--url", &gw.url(), "--user", &user, "--password-stdin", "--insecure", "--json", "--duration", "6"])
        .args(["--type", &format!("touch {marker}{{Enter}}"), "--key-interval-ms", "40"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = probe.spawn().unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert!(report["error"].is_null(), "{report}\n{}", gw.log_text());
    for _ in 0..100 {
        if Path::new(&marker).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(Path::new(&marker).exists(), "the command typed at home ran at the office");
    let _ = std::fs::remove_file(&marker);

    // The real page, in Chromium at home: it signs in and shows the desktop...
    let chromium = Chromium::start_on(&net.home, "en-US", 1280, 800).unwrap();
    let mut page = chromium.page().await.unwrap();
    open_sign_in(&mut page, &gw).await;
    submit_sign_in(&mut page, &user, &password).await;
    wait_for_desktop(&mut page).await;
    assert_eq!(page.eval("document.getElementById('screen').width").await.unwrap(), 1280);

    // ...and the browser itself reaches nothing at the office, nor the gateway's office
    // side: there is no route (not merely a refusal). The gateway's front is the control.
    assert_eq!(page.navigation_error(&format!("{}/healthz", gw.url())).await.unwrap(), None, "control: the gateway's front");
    for (ip, port) in [(&net.office.ip, ws.port), (&net.dmz_back.ip, gw.port)] {
        let error = page.navigation_error(&format!("https://{ip}:{port}/")).await.unwrap();
        let unreachable = ["net::ERR_ADDRESS_UNREACHABLE", "net::ERR_NETWORK_UNREACHABLE", "net::ERR_CONNECTION_TIMED_OUT"];
        assert!(error.as_deref().is_some_and(|e| unreachable.contains(&e)), "the browser at home got {error:?} from {ip}:{port}");
    }
    drop(page);
    drop(chromium);
    drop(gw);
    drop(ws);
}
