//! The protocol crate's rules (names, metadata, TTL, the 1 MB limit) as the ack errors the
//! emulator answers with, and small text helpers.
//!
//! The rules themselves live in `webpubsub_protocol`, so that anything the client lets
//! through, the emulator accepts.

use webpubsub_protocol::{
    check_message_size, check_protobuf_payload, AckError, ClientMessage, Data, RuleError,
};

/// Ack error name for a request the emulator refuses as invalid: a group name outside
/// 1..=1024 characters, an empty event name, metadata or a TTL outside the limits, a
/// `protobuf` payload to a group that is not a serialised `Any`, or a frame over 1 MB.
pub const BAD_REQUEST: &str = "BadRequest";

fn bad_request(e: RuleError) -> AckError {
    AckError::new(BAD_REQUEST, e.to_string())
}

/// A client request the service accepts, from a frame of `frame_len` bytes: within the
/// size limit, its fields within the rules ([`ClientMessage::check`]), and a `protobuf`
/// payload sent to a group a serialised `Any` — a group may have protobuf receivers, which
/// read the payload as an embedded message, whatever subprotocol the sender speaks.
pub(crate) fn request(msg: &ClientMessage, frame_len: usize) -> Result<(), AckError> {
    frame_size(frame_len)?;
    msg.check().map_err(bad_request)?;
    if let ClientMessage::SendToGroup {
        data: Data::Protobuf(any),
        ..
    } = msg
    {
        check_protobuf_payload(any).map_err(bad_request)?;
    }
    Ok(())
}

/// A received request frame of `len` bytes is within the limit (the client checks the
/// same frame before it sends it).
fn frame_size(len: usize) -> Result<(), AckError> {
    check_message_size(len).map_err(bad_request)
}

/// The ack error for a request that was refused before it ran.
pub(crate) fn forbidden(what: &str) -> AckError {
    AckError::new(AckError::FORBIDDEN, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use webpubsub_protocol::{Metadata, ProtobufAny, MAX_MESSAGE_BYTES};

    #[test]
    fn refusals_are_bad_request_acks() {
        let send = |group: &str, data: Data, ttl_seconds| ClientMessage::SendToGroup {
            group: group.into(),
            ack_id: Some(1),
            no_echo: false,
            data,
            ttl_seconds,
            metadata: Metadata::new(),
        };
        let any = ProtobufAny::new("t", vec![1]).to_bytes();
        assert!(request(&send("g", Data::Protobuf(any), Some(300)), 10).is_ok());
        for (refused, why) in [
            (send("", Data::from("x"), None), "group name is empty"),
            (send("g", Data::from("x"), Some(301)), "time to live"),
            (
                send("g", Data::Protobuf(vec![0x0a, 5]), None),
                "google.protobuf.Any",
            ),
        ] {
            let e = request(&refused, 10).unwrap_err();
            assert_eq!(e.name, BAD_REQUEST);
            assert!(e.message.contains(why), "{e:?}");
        }
        let e = request(&ClientMessage::Ping, MAX_MESSAGE_BYTES + 1).unwrap_err();
        assert_eq!(e.name, BAD_REQUEST);
        assert!(frame_size(MAX_MESSAGE_BYTES).is_ok());
        assert_eq!(
            frame_size(MAX_MESSAGE_BYTES + 1).unwrap_err().name,
            BAD_REQUEST
        );
    }
}
