//! An encoded client message as the socket takes it: a text frame (the JSON subprotocols) or
//! a binary frame (protobuf). Clones share the bytes, so a request kept for a resend after
//! recovery (B21) costs no copy.

use crate::protocol::{ClientMessage, Frame, Subprotocol};
use tungstenite::{Bytes, Utf8Bytes};

/// One encoded message, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireFrame {
    /// JSON, for a text frame.
    Text(Utf8Bytes),
    /// Protobuf, for a binary frame.
    Binary(Bytes),
}

impl WireFrame {
    /// Encodes `msg` in the codec of `subprotocol` (moving the encoder's buffer, no copy).
    pub(crate) fn encode(msg: &ClientMessage, subprotocol: Subprotocol) -> WireFrame {
        msg.encode_frame(subprotocol).into()
    }

    /// The payload's length: what the 1 MB message limit counts (B35).
    pub(crate) fn len(&self) -> usize {
        match self {
            WireFrame::Text(t) => t.len(),
            WireFrame::Binary(b) => b.len(),
        }
    }

    /// The text of a JSON frame (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            WireFrame::Text(t) => Some(t.as_str()),
            WireFrame::Binary(_) => None,
        }
    }
}

impl From<Frame> for WireFrame {
    fn from(frame: Frame) -> WireFrame {
        match frame {
            Frame::Text(s) => WireFrame::Text(s.into()),
            Frame::Binary(b) => WireFrame::Binary(b.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_a_text_frame_and_protobuf_a_binary_one() {
        let ping = ClientMessage::Ping;
        let text = WireFrame::encode(&ping, Subprotocol::JsonReliable);
        assert_eq!(text.as_text(), Some(r#"{"type":"ping"}"#));
        assert!(matches!(text, WireFrame::Text(_)));
        let binary = WireFrame::encode(&ping, Subprotocol::Protobuf);
        assert!(matches!(&binary, WireFrame::Binary(b) if b.len() == binary.len()));
        assert_eq!(binary.as_text(), None);
    }
}
