//! Sound both ways, with real parts: a workstation that really plays beeps and
//! records what reaches its audio input (testkit's `SoundWorkstation`, built on
//! ironrdp-server), the gateway, and the real page in headless Chromium whose fake
//! microphone plays other beeps. Figures are printed, never asserted: the call's
//! latency and bitrates are measured by `rebond-call` (docs/performance.md).

use std::path::Path;
use std::time::Duration;

use futures_util::SinkExt as _;
use rebond_testkit::call;
use rebond_testkit::sound::{SoundOptions, SoundWorkstation, SoundWorkstationOptions};
use rebond_wire::{Downlink, ErrorCode, Uplink};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_softphone_user_hears_the_caller_and_is_heard() {
    let report = call::run(Path::new(EXE), 6).await.unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    // The caller's beeps play in the page at their pitch and at a level one hears.
    assert!((report.speaker_hz - call::SPEAKER_HZ).abs() < 15.0, "page played {} Hz", report.speaker_hz);
    assert!(report.speaker_db > -40.0, "page played at {} dB", report.speaker_db);
    // The person's beeps reach the workstation's audio input at their pitch.
    assert!((report.microphone_hz - call::MICROPHONE_HZ).abs() < 15.0, "workstation heard {} Hz", report.microphone_hz);
    assert!(report.microphone_dbfs > -45.0, "workstation heard {} dBFS", report.microphone_dbfs);
    assert!(!report.speaker_latency_ms.is_empty() && !report.microphone_latency_ms.is_empty(), "beeps were heard both ways");
    assert_eq!(report.sent_while_muted, 0, "the microphone button mutes");
    // Sound went as Opus, not PCM.
    assert!(report.speaker_kbit_s > 1.0 && report.speaker_kbit_s < report.speaker_pcm_kbit_s / 10.0);
    assert!(report.microphone_kbit_s > 1.0 && report.microphone_kbit_s < report.microphone_pcm_kbit_s / 10.0);
}

/// A workstation with sound, and a person signed in to it through the probe.
struct SoundDesk {
    ws: SoundWorkstation,
    gw: rebond_testkit::gateway::Gateway,
    user: String,
    password: String,
}

impl SoundDesk {
    fn start(groups: &[&str]) -> Self {
        let (user, password) = account();
        let ca = rebond_testkit::pki::TestCa::create(&rebond_testkit::temp_dir("sound-desk"), "Sound desk CA").unwrap();
        let mut options = SoundWorkstationOptions::new(&ca, &user, &password).unwrap();
        options.sound = SoundOptions { tone_hz: 440.0, level_dbfs: -12.0, beep_ms: 200, gap_ms: 300 };
        let ws = SoundWorkstation::start(options).unwrap();
        let gw = gateway_with(call::CONFIG);
        gw.add_user_in(&user, &password, groups).unwrap();
        gw.route_pinned(&user, &ws.url()).unwrap();
        Self { ws, gw, user, password }
    }

    /// Opens the session socket and reads until the first frame; returns what came.
    async fn open(&self) -> (rebond_probe::Client, rebond_probe::Socket, Vec<Downlink>) {
        let client = rebond_probe::Client::sign_in(&options(&self.gw, &self.user, &self.password)).await.unwrap().unwrap();
        let mut socket = client.open_socket().await.unwrap();
        let seen = first_frame(&mut socket).await;
        (client, socket, seen)
    }
}

async fn speaker_packets(socket: &mut rebond_probe::Socket, within: Duration) -> usize {
    let mut packets = 0;
    let until = tokio::time::Instant::now() + within;
    while let Ok(Ok(Some(msg))) = tokio::time::timeout_at(until, rebond_probe::next_message(socket)).await {
        match msg {
            Downlink::Speaker { .. } => packets += 1,
            Downlink::FrameEnd { seq } => socket.send(Message::Binary(Uplink::FrameAck { seq }.encode().into())).await.unwrap(),
            Downlink::Error { code } => panic!("session ended: {code}"),
            _ => {}
        }
    }
    packets
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_policy_no_sound_channel_is_opened_and_microphone_sound_is_refused() {
    let desk = SoundDesk::start(&["accounting"]);
    let (_client, mut socket, seen) = desk.open().await;
    assert!(seen.contains(&Downlink::SoundSettings { speaker: false, microphone: false, microphone_bitrate: 24_000 }), "{seen:?}");
    assert_eq!(speaker_packets(&mut socket, Duration::from_secs(2)).await, 0, "no sound without the policy");
    assert_eq!(desk.ws.speaker_format(), None, "the sound channel was not even opened");
    // A page that sends microphone sound anyway is cut off, and that is audited.
    socket.send(Message::Binary(Uplink::Microphone { packet: vec![0xf8, 0xff, 0xfe] }.encode().into())).await.unwrap();
    assert_eq!(end_code(&mut socket).await, Some(ErrorCode::ForbiddenMessage));
    assert!(desk.gw.log_text().contains("microphone sound while the policy does not allow the microphone"));
}

#[tokio::test(flavor = "multi_thread")]
async fn microphone_bytes_that_are_not_sound_go_nowhere_and_the_session_goes_on() {
    let desk = SoundDesk::start(&["call-centre"]);
    let (_client, mut socket, seen) = desk.open().await;
    assert!(seen.contains(&Downlink::SoundSettings { speaker: true, microphone: true, microphone_bitrate: 24_000 }), "{seen:?}");
    assert!(speaker_packets(&mut socket, Duration::from_secs(2)).await > 20, "the workstation's sound flows");
    // 0x03: an Opus frame-count packet without its count byte, not a valid packet.
    for _ in 0..3 {
        socket.send(Message::Binary(Uplink::Microphone { packet: vec![0x03] }.encode().into())).await.unwrap();
    }
    assert!(speaker_packets(&mut socket, Duration::from_secs(2)).await > 20, "the session goes on");
    assert!(desk.ws.recording().samples.is_empty(), "nothing reached the workstation's audio input");
    let log = desk.gw.log_text();
    assert_eq!(log.matches("microphone sound that is not Opus").count(), 1, "logged once:\n{log}");
}

/// FreeRDP's shadow server negotiates both sound channels (it feeds and consumes no
/// sound): our clients for them interoperate with a third-party server, and the session
/// works as usual.
#[tokio::test(flavor = "multi_thread")]
async fn sound_channels_negotiate_with_freerdp_and_the_desktop_works() {
    let (user, password) = account();
    let ws = rebond_testkit::workstation::Shadow::start(rebond_testkit::workstation::Security::Nla {
        user: user.clone(),
        password: password.clone(),
    })
    .unwrap();
    let gw = gateway_with(call::CONFIG);
    gw.add_user_in(&user, &password, &["call-centre"]).unwrap();
    gw.route_pinned(&user, &ws.url()).unwrap();
    let client = rebond_probe::Client::sign_in(&options(&gw, &user, &password)).await.unwrap().unwrap();
    let (_client, mut socket) = open_desktop(client).await;
    let marker = std::path::PathBuf::from(format!("/tmp/rebond-sound-{}", rebond_testkit::unique()));
    type_keys(&mut socket, &format!("touch {}{{Enter}}", marker.display())).await;
    assert!(wait_for_file(&marker, Duration::from_secs(10)).await, "typing works with the sound channels open");
    let _ = std::fs::remove_file(&marker);
    let log = gw.log_text();
    assert!(log.contains("the workstation offered its sound formats"), "rdpsnd was negotiated:\n{log}");
    assert!(!log.contains("workstation_protocol_error"), "{log}");
}
