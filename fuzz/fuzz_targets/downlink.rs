//! What the probe reads from a gateway: decoding never panics, and round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rebond_wire::Downlink;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Downlink::decode(data) {
        assert_eq!(msg.encode(), data);
    }
    let _ = Downlink::decode_header(data);
});
