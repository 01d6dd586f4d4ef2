//! Wake-on-LAN: a sleeping workstation is woken by its magic packet, the page says so,
//! and the desktop follows; one that never wakes ends with its own clear error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rebond_directory::Wake;
use rebond_testkit::network::Host;
use rebond_testkit::pki::TestCa;
use rebond_testkit::workstation::{Security, Shadow, ShadowOptions};

use crate::common::*;

const MAC: &str = "52:54:00:12:34:56";

#[tokio::test(flavor = "multi_thread")]
async fn a_sleeping_workstation_is_woken_and_one_that_stays_off_is_reported() {
    let (user, password) = account();
    let (ip, port, wake_port) = ("127.0.0.31", rebond_testkit::free_port(), rebond_testkit::free_port());
    let ca = TestCa::create(&rebond_testkit::temp_dir("wake-ca"), "Workstations CA").unwrap();
    let certificate = ca.issue("pc", &[&format!("IP:{ip}")]).unwrap();

    // The PC sleeps: only its network card listens, for its own magic packet; then it boots.
    let booted: Arc<Mutex<Option<(Instant, Shadow)>>> = Arc::default();
    let card = std::net::UdpSocket::bind((ip, wake_port)).unwrap();
    let pc = {
        let (booted, user, password) = (booted.clone(), user.clone(), password.clone());
        std::thread::spawn(move || {
            let mac = Wake::parse(MAC, None).unwrap().mac;
            let mut buf = [0u8; 512];
            loop {
                let (n, _) = card.recv_from(&mut buf).unwrap();
                if Wake::is_magic_packet_for(&mac, &buf[..n]) {
                    break;
                }
            }
            let woke = Instant::now();
            let host = Host { netns: None, ip: ip.into() };
            let options = ShadowOptions { port: Some(port), certificate: Some(certificate) };
            let shadow = Shadow::start_with(&host, Security::Nla { user, password }, None, options).unwrap();
            *booted.lock().unwrap() = Some((woke, shadow));
        })
    };

    let gw = gateway_with("wake_timeout_seconds = 10\n");
    gw.add_user(&user, &password).unwrap();
    let ca_file = ca.ca_file.display().to_string();
    let wake_address = format!("{ip}:{wake_port}");
    let out = gw
        .cli(&["route", "set", &user, &format!("rdp://{ip}:{port}"), "--ca", &ca_file, "--wake-mac", MAC, "--wake-address", &wake_address], None)
        .unwrap();
    assert!(out.contains("wake-on-LAN 52:54:00:12:34:56"), "{out}");

    let started = Instant::now();
    let (report, _) = probe(&gw, &user, &password, None, 1).await;
    assert!(report.error.is_none(), "{report:?}\n{}", gw.log_text());
    assert_eq!(report.stages.first(), Some(&5), "the page first hears that the PC is being woken: {:?}", report.stages);
    assert!(report.stages.contains(&4), "{:?}", report.stages);
    pc.join().unwrap();
    let (woke, _shadow) = booted.lock().unwrap().take().unwrap();
    eprintln!(
        "magic packet {} ms after sign-in; desktop {} ms after sign-in",
        woke.duration_since(started).as_millis(),
        report.time_to_first_frame_ms.unwrap()
    );
    assert!(gw.log_text().contains("workstation woke up"));

    // Another PC is off at the plug: the wait is bounded and the person told why.
    let (other, other_password) = account();
    gw.add_user(&other, &other_password).unwrap();
    gw.cli(&["route", "set", &other, "rdp://127.0.0.32:3389", "--ca", &ca_file, "--wake-mac", "52:54:00:aa:bb:cc", "--wake-address", "127.0.0.32:9"], None)
        .unwrap();
    let started = Instant::now();
    let (report, _) = probe(&gw, &other, &other_password, None, 1).await;
    assert_eq!(error_code(&report), Some("workstation_did_not_wake"), "{report:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "bounded wait: {:?}", started.elapsed());
}
