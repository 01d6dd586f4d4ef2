use super::*;

fn all_uplinks() -> Vec<Uplink> {
    vec![
        Uplink::Key { scancode: 0x1e, extended: false, down: true },
        Uplink::Key { scancode: 0x38, extended: true, down: false },
        Uplink::PointerMove { x: 1279, y: 799 },
        Uplink::PointerButton { button: Button::Right, down: true, x: 3, y: 4 },
        Uplink::Wheel { delta: -120, horizontal: false, x: 10, y: 20 },
        Uplink::Resize { width: 1920, height: 1080 },
        Uplink::FrameAck { seq: u32::MAX },
        Uplink::ReleaseAll,
        Uplink::Keepalive,
    ]
}

#[test]
fn uplink_round_trips() {
    let microphone = Uplink::Microphone { packet: vec![0x78; MAX_MICROPHONE_PACKET] };
    for m in all_uplinks().into_iter().chain([microphone]) {
        assert_eq!(Uplink::decode(&m.encode()), Ok(m));
    }
}

#[test]
fn microphone_packets_are_bounded() {
    assert_eq!(Uplink::decode(&[0x89]), Err(DecodeError::InvalidValue("microphone packet length")));
    let mut long = vec![0x89];
    long.extend(std::iter::repeat_n(0u8, MAX_MICROPHONE_PACKET + 1));
    assert!(Uplink::decode(&long).is_err());
    assert!(matches!(Uplink::decode(&vec![0x89; MAX_UPLINK_LEN + 1]), Err(DecodeError::TooLong(_))));
}

#[test]
fn downlink_round_trips() {
    let msgs = vec![
        Downlink::Hello { version: PROTOCOL_VERSION },
        Downlink::Status { stage: Stage::Securing },
        Downlink::DesktopSize { width: 1280, height: 800 },
        Downlink::Tile { x: 64, y: 128, width: 64, height: 32, codec: ImageCodec::Jpeg, data: vec![1, 2, 3] },
        Downlink::FrameEnd { seq: 7 },
        Downlink::PointerShape { hotspot_x: 1, hotspot_y: 2, png: vec![9; 20] },
        Downlink::PointerHidden,
        Downlink::PointerDefault,
        Downlink::Error { code: ErrorCode::SessionTakenOver },
        Downlink::Notice { notice: Notice::Draining, seconds: 600 },
        Downlink::SocketKey { key: [7; crate::SOCKET_KEY_LEN] },
        Downlink::SoundSettings { speaker: true, microphone: false, microphone_bitrate: 24_000 },
        Downlink::Speaker { fresh: true, packet: vec![0xfc, 1, 2] },
        Downlink::Moves {
            moves: vec![
                Move { src_x: 0, src_y: 64, x: 0, y: 0, width: 1280, height: 640 },
                Move { src_x: 100, src_y: 7, x: 116, y: 7, width: 64, height: 32 },
            ],
        },
        Downlink::CacheDraws {
            rects: vec![CacheRect { slot: 0, x: 64, y: 0, width: 1216, height: 800 }, CacheRect { slot: TILE_CACHE_SLOTS - 1, x: 0, y: 768, width: 64, height: 32 }],
        },
        Downlink::CacheStores { rects: vec![CacheRect { slot: 5, x: 1216, y: 768, width: 64, height: 32 }] },
    ];
    for m in msgs {
        assert_eq!(Downlink::decode(&m.encode()), Ok(m));
    }
}

#[test]
fn uplink_is_strict() {
    // Every truncation of a valid message is refused.
    for m in all_uplinks() {
        let bytes = m.encode();
        for cut in 0..bytes.len() {
            assert!(Uplink::decode(&bytes[..cut]).is_err(), "{m:?} cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Uplink::decode(&longer), Err(DecodeError::Trailing(1)));
    }
    // Downlink types, clipboard-like payloads and junk are not uplink messages.
    assert_eq!(Uplink::decode(&[0x04, 0, 0]), Err(DecodeError::UnknownType(0x04)));
    assert_eq!(Uplink::decode(&[0xff]), Err(DecodeError::UnknownType(0xff)));
    assert_eq!(Uplink::decode(&[0x81, 0x1e, 2, 1]), Err(DecodeError::InvalidValue("flag")));
    assert_eq!(Uplink::decode(&[0x83, 9, 1, 0, 0, 0, 0]), Err(DecodeError::InvalidValue("button")));
    assert!(matches!(Uplink::decode(&[0x88; 1000]), Err(DecodeError::TooLong(1000))));
    assert_eq!(Uplink::decode(&[0x88; 64]), Err(DecodeError::Trailing(63)));
}

#[test]
fn error_codes_are_stable_and_named_once() {
    let mut names = std::collections::HashSet::new();
    for (i, code) in ErrorCode::ALL.iter().enumerate() {
        assert_eq!(*code as u16, i as u16 + 1, "codes are numbered densely and never renumbered");
        assert!(names.insert(code.name()));
        assert_eq!(ErrorCode::from_name(code.name()), Some(*code));
        for lang in Lang::ALL {
            assert!(code.sentence(lang).ends_with('.'));
        }
        assert_ne!(code.sentence(Lang::En), code.sentence(Lang::Fr));
    }
    assert_eq!(ErrorCode::WorkstationRefusedCredentials.to_string(), "RB-3 workstation_refused_credentials");
}

#[test]
fn language_negotiation() {
    assert_eq!(Lang::negotiate("fr-FR,fr;q=0.9,en;q=0.8"), Lang::Fr);
    assert_eq!(Lang::negotiate("de-DE,en-US;q=0.7"), Lang::En);
    assert_eq!(Lang::negotiate("FR"), Lang::Fr);
    assert_eq!(Lang::negotiate(""), Lang::En);
}

proptest::proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
        let _ = Uplink::decode(&bytes);
        let _ = Downlink::decode(&bytes);
    }
}

#[test]
fn moves_are_whole_and_not_empty() {
    assert_eq!(Downlink::decode(&[0x0e]), Err(DecodeError::InvalidValue("moves length")));
    let one = Downlink::Moves { moves: vec![Move { src_x: 1, src_y: 2, x: 3, y: 4, width: 5, height: 6 }] }.encode();
    assert_eq!(Downlink::decode(&one[..one.len() - 1]), Err(DecodeError::InvalidValue("moves length")));
    let mut empty = one.clone();
    empty[9..11].copy_from_slice(&0u16.to_le_bytes());
    assert_eq!(Downlink::decode(&empty), Err(DecodeError::InvalidValue("empty move")));
}

#[test]
fn cache_messages_are_checked() {
    for tag in [0x0f, 0x10] {
        let msg = |slot: u16, x: u16, width: u16| {
            let mut m = vec![tag];
            for v in [slot, x, 0, width, 64] {
                m.extend_from_slice(&v.to_le_bytes());
            }
            m
        };
        assert!(Downlink::decode(&msg(TILE_CACHE_SLOTS - 1, 0, 1280)).is_ok());
        for (slot, x, width) in [(TILE_CACHE_SLOTS, 0, 64), (0, 0, 0), (0, u16::MAX, 2)] {
            assert_eq!(Downlink::decode(&msg(slot, x, width)), Err(DecodeError::InvalidValue("cache rectangle")));
        }
        assert!(Downlink::decode(&[tag]).is_err(), "no entry");
        assert!(Downlink::decode(&[tag, 0, 0, 0]).is_err(), "a partial entry");
    }
}

#[test]
fn a_cache_rectangle_is_split_into_tiles_in_consecutive_slots() {
    let k = CacheRect { slot: TILE_CACHE_SLOTS - 1, x: 1152, y: 768, width: 128, height: 32 };
    let tiles: Vec<KeptTile> = k.tiles().collect();
    assert_eq!(
        tiles,
        vec![
            KeptTile { slot: TILE_CACHE_SLOTS - 1, x: 1152, y: 768, width: 64, height: 32 },
            KeptTile { slot: 0, x: 1216, y: 768, width: 64, height: 32 },
        ]
    );
    let odd = CacheRect { slot: 0, x: 0, y: 0, width: 100, height: 70 };
    let sizes: Vec<(u16, u16)> = odd.tiles().map(|t| (t.width, t.height)).collect();
    assert_eq!(sizes, vec![(64, 64), (36, 64), (64, 6), (36, 6)]);
}
