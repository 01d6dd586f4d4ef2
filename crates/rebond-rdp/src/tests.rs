//! What the gateway announces to a workstation, read back from the real bytes the
//! connector writes (no workstation needed: the connector is driven sans-IO).

use std::time::Duration;

use ironrdp_connector::Sequence as _;
use ironrdp_core::{decode, encode_vec, WriteBuf};
use ironrdp_pdu::nego::{ConnectionConfirm, ResponseFlags, SecurityProtocol};
use ironrdp_pdu::x224::{X224Data, X224};
use rebond_policy::ChannelPolicy;
use zeroize::Zeroizing;

use super::*;

fn request() -> ConnectRequest {
    ConnectRequest {
        host: "127.0.0.1".into(),
        port: 3389,
        trust: CertTrust::InsecureAcceptAny,
        username: "alice".into(),
        password: Zeroizing::new("secret".into()),
        domain: None,
        width: 1280,
        height: 800,
        keyboard_layout: keyboard_layout_for("fr-FR"),
        connect_timeout: Duration::from_secs(1),
        sound: SoundChannels::default(),
    }
}

/// Drives the connector up to the MCS Connect Initial and returns it.
fn mcs_connect_initial(protocol: SecurityProtocol) -> ironrdp_pdu::mcs::ConnectInitial {
    mcs_connect_initial_with(protocol, SoundChannels::default())
}

fn mcs_connect_initial_with(protocol: SecurityProtocol, sound: SoundChannels) -> ironrdp_pdu::mcs::ConnectInitial {
    let mut req = request();
    req.sound = sound;
    let (mut connector, _) = client_connector(connector_config(&req), "127.0.0.1:40000".parse().unwrap(), sound);
    let mut buf = WriteBuf::new();
    connector.step_no_input(&mut buf).expect("connection request");
    let confirm = encode_vec(&X224(ConnectionConfirm::Response { flags: ResponseFlags::empty(), protocol })).unwrap();
    buf.clear();
    connector.step(&confirm, None, &mut buf).expect("connection confirm");
    assert!(connector.should_perform_security_upgrade());
    connector.mark_security_upgrade_as_done();
    if connector.should_perform_credssp() {
        connector.mark_credssp_as_done();
    }
    buf.clear();
    let written = connector.step_no_input(&mut buf).expect("MCS connect initial");
    let bytes = &buf[..written.size().expect("connect initial written")];
    let data = decode::<X224<X224Data<'_>>>(bytes).expect("X.224 data").0.data;
    decode::<ironrdp_pdu::mcs::ConnectInitial>(&data).expect("MCS Connect Initial")
}

#[test]
fn mcs_connect_initial_announces_only_allowed_channels() {
    for protocol in [SecurityProtocol::SSL, SecurityProtocol::HYBRID] {
        let ci = mcs_connect_initial(protocol);
        let blocks = ci.conference_create_request.gcc_blocks();
        let names: Vec<String> = blocks
            .channel_names()
            .unwrap_or_default()
            .iter()
            .map(|c| c.name.as_str().unwrap_or("?").to_owned())
            .collect();
        assert_eq!(names, vec!["drdynvc".to_owned()], "{protocol:?}");
        ChannelPolicy::pixels_only().check_static(names.iter().map(String::as_str)).unwrap();
        assert_eq!(blocks.core.keyboard_layout, 0x040c, "AZERTY layout is announced");
    }
}

#[test]
fn sound_channels_are_announced_only_when_allowed() {
    for (speaker, microphone) in [(true, false), (false, true), (true, true)] {
        let ci = mcs_connect_initial_with(SecurityProtocol::SSL, SoundChannels { speaker, microphone });
        let mut names: Vec<String> = ci
            .conference_create_request
            .gcc_blocks()
            .channel_names()
            .unwrap_or_default()
            .iter()
            .map(|c| c.name.as_str().unwrap_or("?").to_owned())
            .collect();
        names.sort();
        let expected: Vec<&str> = if speaker { vec!["drdynvc", "rdpsnd"] } else { vec!["drdynvc"] };
        assert_eq!(names, expected);
        ChannelPolicy::with_sound(speaker, microphone).check_static(names.iter().map(String::as_str)).unwrap();
    }
}

#[test]
fn keyboard_layouts() {
    assert_eq!(keyboard_layout_for("fr"), 0x040c);
    assert_eq!(keyboard_layout_for("fr-BE"), 0x080c);
    assert_eq!(keyboard_layout_for("en-US"), 0x0409);
    assert_eq!(keyboard_layout_for("xx"), 0x0409);
}

#[test]
fn pinned_fingerprints_parse() {
    let fp = "AB:".repeat(31) + "CD";
    assert_eq!(CertTrust::pinned(&fp).unwrap(), CertTrust::Pinned({
        let mut a = [0xab; 32];
        a[31] = 0xcd;
        a
    }));
    assert!(CertTrust::pinned("sha256:1234").is_err());
    assert!(CertTrust::pinned(&"zz".repeat(32)).is_err());
}
