//! `ClientMessage::decode` on arbitrary text: it never panics, and whatever decodes to a
//! known message re-encodes to text that decodes to the same message.
#![no_main]

#[path = "../roundtrip.rs"]
mod roundtrip;

use libfuzzer_sys::fuzz_target;
use webpubsub_protocol::ClientMessage;

fuzz_target!(|bytes: &[u8]| {
    // WebSocket text frames are UTF-8; the transport rejects anything else before the codec.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(msg) = ClientMessage::decode(text) else {
        return;
    };
    // `Unknown` re-encodes its description, not the frame: no round trip to check.
    if matches!(msg, ClientMessage::Unknown { .. }) {
        return;
    }
    let encoded = msg.encode();
    match ClientMessage::decode(&encoded) {
        Ok(again) => assert!(
            roundtrip::same_client(&again, &msg),
            "frame {text:?} decoded to {msg:?}, re-encoded as {encoded:?}, decoded to {again:?}"
        ),
        Err(e) => panic!("frame {text:?} re-encoded as {encoded:?}, which fails: {e}"),
    }
});
