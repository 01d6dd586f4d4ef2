//! The worker link, both ways: whatever bytes arrive on a worker's stdin (from the
//! gateway) or on the gateway's side (from a possibly compromised worker), framing
//! never panics, never allocates beyond its limit, and what parses re-encodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rebond_link as link;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while rest.len() >= 4 {
        let prefix = [rest[0], rest[1], rest[2], rest[3]];
        rest = &rest[4..];
        let Ok(len) = link::frame_len(prefix) else { return };
        assert!(len <= link::MAX_FRAME);
        if rest.len() < len {
            return; // the reader would wait for more
        }
        let (body, tail) = rest.split_at(len);
        rest = tail;
        if let Ok(msg) = link::parse_to_worker(body.to_vec()) {
            let frame = link::encode_to_worker(&msg);
            assert_eq!(&frame[..4], &prefix);
            assert_eq!(&frame[4..], body);
        }
        if let Ok(downlink) = link::parse_from_worker(body.to_vec()) {
            assert_eq!(&body[1..], &downlink[..]);
            // What the gateway then reads of it (status and error headers) never panics.
            let _ = rebond_wire::Downlink::decode_header(&downlink);
        }
    }
});
