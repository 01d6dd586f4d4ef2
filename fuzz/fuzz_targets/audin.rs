//! What a workstation sends on the audio-input channel (and a client, to the test
//! workstation's side): decoding and negotiating never panic; a decoded PDU encodes
//! back to the same bytes (formats aside: their size field is recomputed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rebond_audio::audin::{client_formats, AudinClient, AudinPdu, AudinServer};

fuzz_target!(|data: &[u8]| {
    if let Ok(pdu) = AudinPdu::decode(data) {
        if !matches!(pdu, AudinPdu::Formats { .. }) {
            assert_eq!(pdu.encode(), data);
        }
    }
    // Feed the bytes as a stream of messages split on 0xFF bytes, to reach later states.
    let mut client = AudinClient::new();
    let mut server = AudinServer::new(client_formats());
    for message in data.split(|b| *b == 0xff) {
        let _ = client.on_message(message);
        let _ = server.on_message(message);
        let _ = client.send(&[0, 1, -1, i16::MAX, i16::MIN]);
    }
});
