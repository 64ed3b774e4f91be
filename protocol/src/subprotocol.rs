//! The four subprotocols, and the codec each one speaks.

use crate::client_msg::ClientMessage;
use crate::error::ProtocolError;
use crate::service_msg::ServiceMessage;
use std::fmt;

/// The plain JSON subprotocol (`json.webpubsub.azure.v1`): no sequence ids, no recovery.
pub const JSON_SUBPROTOCOL: &str = "json.webpubsub.azure.v1";
/// The reliable JSON subprotocol (`json.reliable.webpubsub.azure.v1`): sequence ids,
/// sequence acks and session recovery.
pub const JSON_RELIABLE_SUBPROTOCOL: &str = "json.reliable.webpubsub.azure.v1";
/// The plain protobuf subprotocol (`protobuf.webpubsub.azure.v1`): binary frames, no
/// sequence ids, no recovery.
pub const PROTOBUF_SUBPROTOCOL: &str = "protobuf.webpubsub.azure.v1";
/// The reliable protobuf subprotocol (`protobuf.reliable.webpubsub.azure.v1`): binary
/// frames, sequence ids, sequence acks and session recovery.
pub const PROTOBUF_RELIABLE_SUBPROTOCOL: &str = "protobuf.reliable.webpubsub.azure.v1";

/// A Web PubSub subprotocol: which codec a connection speaks and whether it is reliable.
///
/// The messages are the same in all four; only their encoding differs (JSON text frames or
/// protobuf binary frames), and only the reliable ones carry sequence ids and recover.
///
/// ```
/// use webpubsub_protocol::{ClientMessage, Frame, ServiceMessage, Subprotocol};
/// let p = Subprotocol::from_name("protobuf.reliable.webpubsub.azure.v1").unwrap();
/// assert!(p.is_reliable() && p.is_binary());
/// let frame = ClientMessage::Ping.encode_frame(p);
/// assert!(matches!(frame, Frame::Binary(_)));
/// assert_eq!(ClientMessage::decode_frame(p, frame.as_bytes()), Ok(ClientMessage::Ping));
/// let pong = ServiceMessage::Pong.encode_frame(Subprotocol::Json);
/// assert_eq!(pong, Frame::Text(r#"{"type":"pong"}"#.into()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subprotocol {
    /// `json.webpubsub.azure.v1`.
    Json,
    /// `json.reliable.webpubsub.azure.v1`, the default of every official SDK.
    JsonReliable,
    /// `protobuf.webpubsub.azure.v1`.
    Protobuf,
    /// `protobuf.reliable.webpubsub.azure.v1`.
    ProtobufReliable,
}

impl Subprotocol {
    /// All four, reliable JSON first (the default).
    pub const ALL: [Subprotocol; 4] = [
        Subprotocol::JsonReliable,
        Subprotocol::Json,
        Subprotocol::ProtobufReliable,
        Subprotocol::Protobuf,
    ];

    /// The name offered in `Sec-WebSocket-Protocol`.
    pub fn name(self) -> &'static str {
        match self {
            Subprotocol::Json => JSON_SUBPROTOCOL,
            Subprotocol::JsonReliable => JSON_RELIABLE_SUBPROTOCOL,
            Subprotocol::Protobuf => PROTOBUF_SUBPROTOCOL,
            Subprotocol::ProtobufReliable => PROTOBUF_RELIABLE_SUBPROTOCOL,
        }
    }

    /// The subprotocol of a name, ignoring ASCII case (as the service and Microsoft's
    /// emulator compare them); `None` for any other name, which makes a simple WebSocket
    /// client.
    pub fn from_name(name: &str) -> Option<Subprotocol> {
        Subprotocol::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// Whether it carries sequence ids and recovers dropped connections.
    pub fn is_reliable(self) -> bool {
        matches!(
            self,
            Subprotocol::JsonReliable | Subprotocol::ProtobufReliable
        )
    }

    /// Whether it speaks protobuf in binary frames (else JSON in text frames).
    pub fn is_binary(self) -> bool {
        matches!(self, Subprotocol::Protobuf | Subprotocol::ProtobufReliable)
    }
}

impl fmt::Display for Subprotocol {
    /// The wire name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One encoded message: a WebSocket text frame (JSON) or binary frame (protobuf).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Frame {
    /// A JSON message, for a text frame.
    Text(String),
    /// A protobuf message, for a binary frame.
    Binary(Vec<u8>),
}

impl Frame {
    /// The frame's payload.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Frame::Text(s) => s.as_bytes(),
            Frame::Binary(b) => b,
        }
    }

    /// The payload's length in bytes: what the 1 MB message limit
    /// ([`check_message_size`](crate::check_message_size)) counts.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty (only an unknown protobuf message encodes so).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it goes in a binary frame.
    pub fn is_binary(&self) -> bool {
        matches!(self, Frame::Binary(_))
    }

    /// The payload's bytes, without copying.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Frame::Text(s) => s.into_bytes(),
            Frame::Binary(b) => b,
        }
    }
}

/// A JSON frame's payload as text.
fn text(payload: &[u8]) -> Result<&str, ProtocolError> {
    std::str::from_utf8(payload).map_err(|e| ProtocolError::InvalidJson(format!("not UTF-8: {e}")))
}

impl ClientMessage {
    /// Encodes the message in the codec of `subprotocol`.
    pub fn encode_frame(&self, subprotocol: Subprotocol) -> Frame {
        if subprotocol.is_binary() {
            Frame::Binary(self.encode_protobuf())
        } else {
            Frame::Text(self.encode())
        }
    }

    /// Decodes a frame's payload in the codec of `subprotocol` (a JSON payload must be
    /// UTF-8).
    pub fn decode_frame(
        subprotocol: Subprotocol,
        payload: &[u8],
    ) -> Result<ClientMessage, ProtocolError> {
        if subprotocol.is_binary() {
            ClientMessage::decode_protobuf(payload)
        } else {
            ClientMessage::decode(text(payload)?)
        }
    }
}

impl ServiceMessage {
    /// Encodes the message in the codec of `subprotocol`.
    pub fn encode_frame(&self, subprotocol: Subprotocol) -> Frame {
        if subprotocol.is_binary() {
            Frame::Binary(self.encode_protobuf())
        } else {
            Frame::Text(self.encode())
        }
    }

    /// Decodes a frame's payload in the codec of `subprotocol` (a JSON payload must be
    /// UTF-8).
    pub fn decode_frame(
        subprotocol: Subprotocol,
        payload: &[u8],
    ) -> Result<ServiceMessage, ProtocolError> {
        if subprotocol.is_binary() {
            ServiceMessage::decode_protobuf(payload)
        } else {
            ServiceMessage::decode(text(payload)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_ignoring_case() {
        for p in Subprotocol::ALL {
            assert_eq!(Subprotocol::from_name(p.name()), Some(p));
            assert_eq!(Subprotocol::from_name(&p.name().to_uppercase()), Some(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(Subprotocol::from_name("mqtt"), None);
        assert_eq!(Subprotocol::from_name(""), None);
    }

    #[test]
    fn reliability_and_framing_follow_the_name() {
        for p in Subprotocol::ALL {
            assert_eq!(p.is_reliable(), p.name().contains(".reliable."), "{p}");
            assert_eq!(p.is_binary(), p.name().starts_with("protobuf."), "{p}");
        }
    }

    #[test]
    fn a_json_frame_that_is_not_utf8_is_invalid_json() {
        assert!(matches!(
            ServiceMessage::decode_frame(Subprotocol::JsonReliable, b"{\"type\":\"\xff\"}"),
            Err(ProtocolError::InvalidJson(_))
        ));
        assert!(matches!(
            ClientMessage::decode_frame(Subprotocol::Json, b"\xff"),
            Err(ProtocolError::InvalidJson(_))
        ));
    }

    #[test]
    fn frames_expose_their_bytes() {
        let f = Frame::Text("ab".into());
        assert_eq!(
            (f.len(), f.is_binary(), f.as_bytes()),
            (2, false, &b"ab"[..])
        );
        let f = Frame::Binary(vec![1]);
        assert!(f.is_binary() && !f.is_empty());
        assert_eq!(f.into_bytes(), [1]);
    }
}
