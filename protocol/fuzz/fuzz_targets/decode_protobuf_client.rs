//! `ClientMessage::decode_protobuf` on arbitrary bytes: it never panics, and whatever decodes
//! to a known message re-encodes to bytes that decode to the same message.
#![no_main]

#[path = "../roundtrip.rs"]
mod roundtrip;

use libfuzzer_sys::fuzz_target;
use webpubsub_protocol::ClientMessage;

fuzz_target!(|bytes: &[u8]| {
    let Ok(msg) = ClientMessage::decode_protobuf(bytes) else {
        return;
    };
    // `Unknown` encodes as the empty frame, not as what it describes: no round trip to check.
    if matches!(msg, ClientMessage::Unknown { .. }) {
        return;
    }
    let encoded = msg.encode_protobuf();
    match ClientMessage::decode_protobuf(&encoded) {
        Ok(again) => assert!(
            roundtrip::same_client(&again, &msg),
            "frame {bytes:?} decoded to {msg:?}, re-encoded as {encoded:?}, decoded to {again:?}"
        ),
        Err(e) => panic!("frame {bytes:?} re-encoded as {encoded:?}, which fails: {e}"),
    }
});
