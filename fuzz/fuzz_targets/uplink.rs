//! Everything the browser can send: decoding and the uplink filter must never
//! panic, and what passes must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rebond_policy::{UplinkFilter, Verdict};
use rebond_wire::Uplink;

fuzz_target!(|data: &[u8]| {
    let mut filter = UplinkFilter::new(1280, 800);
    // A session is a sequence of messages: split the input on 0xFF.
    for msg in data.split(|b| *b == 0xff) {
        if let Ok(decoded) = Uplink::decode(msg) {
            assert_eq!(decoded.encode(), msg, "decode/encode round trip");
        }
        if let Verdict::Input(inputs) = filter.binary(msg) {
            for i in inputs {
                if let rebond_policy::Input::PointerMove { x, y } = i {
                    assert!(x < 1280 && y < 800, "pointer clamped to the desktop");
                }
            }
        }
    }
    let _ = filter.release_all();
});
