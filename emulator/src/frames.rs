//! Frames on their way to a socket: a session's queued frame, and one message fanned out to
//! many sessions, encoded at most once per codec.
//!
//! A session speaks one [`Subprotocol`]: JSON in text frames or protobuf in binary frames
//! (PROTOBUF.md). Everything a session sends is encoded in its own subprotocol; a message to
//! many sessions (a group, a user, the hub) is encoded once for the JSON receivers and once
//! for the protobuf ones — each only when the first receiver that speaks it asks — and each
//! reliable receiver gets its own sequence id spliced into that encoding.

use std::cell::OnceCell;
use std::time::Instant;
use tungstenite::{Bytes, Message, Utf8Bytes};
use webpubsub_protocol::{
    redact_frame, splice_protobuf_sequence_id, splice_sequence_id, ServiceMessage, Subprotocol,
};

/// One encoded frame queued for a socket: JSON text or protobuf binary. Cloning it is a
/// reference-count increment, so a fan-out shares one buffer between its receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutFrame {
    /// A JSON message, for a text frame.
    Text(Utf8Bytes),
    /// A protobuf message, for a binary frame.
    Binary(Bytes),
}

impl OutFrame {
    /// `msg` in the codec of `subprotocol`.
    pub fn encode(msg: &ServiceMessage, subprotocol: Subprotocol) -> OutFrame {
        if subprotocol.is_binary() {
            let mut out = Vec::with_capacity(64);
            msg.encode_protobuf_into(&mut out);
            OutFrame::Binary(Bytes::from(out))
        } else {
            let mut out = String::with_capacity(96);
            msg.encode_into(&mut out);
            OutFrame::Text(Utf8Bytes::from(out))
        }
    }

    /// The payload's length in bytes (what the unacked byte limit counts).
    pub fn len(&self) -> usize {
        match self {
            OutFrame::Text(t) => t.len(),
            OutFrame::Binary(b) => b.len(),
        }
    }

    /// The WebSocket message that carries it.
    pub fn into_message(self) -> Message {
        match self {
            OutFrame::Text(t) => Message::Text(t),
            OutFrame::Binary(b) => Message::Binary(b),
        }
    }

    /// What a trace log may show: a text frame without its reconnection token, or the size
    /// of a binary one (whose `connected` message carries the token too).
    pub fn for_log(&self) -> String {
        match self {
            OutFrame::Text(t) => redact_frame(t).into_owned(),
            OutFrame::Binary(b) => format!("<protobuf, {} bytes>", b.len()),
        }
    }
}

/// A `message` (group or server) on its way to many sessions: the value, its encodings made
/// on first use, and when it expires (its time to live).
///
/// Lives on the thread that fans it out (the encodings are not shared across threads).
pub(crate) struct Outgoing {
    msg: ServiceMessage,
    /// The JSON encoding without a sequence id.
    json: OnceCell<Utf8Bytes>,
    /// The protobuf encoding without a sequence id.
    protobuf: OnceCell<Bytes>,
    expires: Option<Instant>,
}

impl Outgoing {
    /// A group or server message without a sequence id, which never expires.
    pub fn new(msg: ServiceMessage) -> Outgoing {
        debug_assert!(
            matches!(
                msg,
                ServiceMessage::GroupMessage {
                    sequence_id: None,
                    ..
                } | ServiceMessage::ServerMessage {
                    sequence_id: None,
                    ..
                }
            ),
            "only messages without a sequence id fan out"
        );
        Outgoing {
            msg,
            json: OnceCell::new(),
            protobuf: OnceCell::new(),
            expires: None,
        }
    }

    /// A reliable session does not resend it on recovery after `at` (its time to live).
    pub fn expiring_at(mut self, at: Option<Instant>) -> Outgoing {
        self.expires = at;
        self
    }

    /// The message.
    pub fn message(&self) -> &ServiceMessage {
        &self.msg
    }

    /// When its time to live ends, if it has one.
    pub fn expires(&self) -> Option<Instant> {
        self.expires
    }

    fn json(&self) -> &Utf8Bytes {
        self.json.get_or_init(|| {
            let mut out = String::with_capacity(96);
            self.msg.encode_into(&mut out);
            Utf8Bytes::from(out)
        })
    }

    fn protobuf(&self) -> &Bytes {
        self.protobuf.get_or_init(|| {
            let mut out = Vec::with_capacity(64);
            self.msg.encode_protobuf_into(&mut out);
            Bytes::from(out)
        })
    }

    /// The frame for a receiver that speaks `subprotocol`, without a sequence id (plain
    /// subprotocols): the shared encoding.
    pub fn frame(&self, subprotocol: Subprotocol) -> OutFrame {
        if subprotocol.is_binary() {
            OutFrame::Binary(self.protobuf().clone())
        } else {
            OutFrame::Text(self.json().clone())
        }
    }

    /// The frame for a reliable receiver: the shared encoding with `seq` spliced in, equal
    /// byte for byte to encoding the message with that sequence id.
    pub fn sequenced(&self, subprotocol: Subprotocol, seq: u64) -> OutFrame {
        if subprotocol.is_binary() {
            let body = self.protobuf();
            let mut out = Vec::with_capacity(body.len() + 12);
            match splice_protobuf_sequence_id(body, seq, &mut out) {
                Ok(()) => OutFrame::Binary(Bytes::from(out)),
                // Only a group or server message without a sequence id fans out (see `new`),
                // which the splice always takes; encoding it again is the safe answer anyway.
                Err(e) => {
                    log::error!("emulator: splicing a sequence id failed ({e}); encoding again");
                    OutFrame::encode(&with_sequence_id(&self.msg, seq), subprotocol)
                }
            }
        } else {
            let body = self.json();
            let mut out = String::with_capacity(body.len() + 24);
            splice_sequence_id(body.as_str(), seq, &mut out);
            OutFrame::Text(Utf8Bytes::from(out))
        }
    }
}

/// `msg` with its sequence id set to `seq`.
fn with_sequence_id(msg: &ServiceMessage, seq: u64) -> ServiceMessage {
    let mut msg = msg.clone();
    if let ServiceMessage::GroupMessage { sequence_id, .. }
    | ServiceMessage::ServerMessage { sequence_id, .. } = &mut msg
    {
        *sequence_id = Some(seq);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use webpubsub_protocol::{Data, Metadata, ProtobufAny};

    fn group_message(sequence_id: Option<u64>) -> ServiceMessage {
        ServiceMessage::GroupMessage {
            group: "g".into(),
            data: Data::from(ProtobufAny::new("t", vec![1, 2])),
            from_user_id: None,
            sequence_id,
            metadata: Metadata::from([("k", "v")]),
        }
    }

    #[test]
    fn each_subprotocol_gets_the_direct_encoding_with_its_sequence_id() {
        let out = Outgoing::new(group_message(None));
        for p in Subprotocol::ALL {
            let plain = out.frame(p);
            assert_eq!(plain, OutFrame::encode(&group_message(None), p), "{p}");
            assert_eq!(
                ServiceMessage::decode_frame(p, plain.clone().into_message().into_data().as_ref()),
                Ok(group_message(None))
            );
            for seq in [1, 300, u64::MAX] {
                assert_eq!(
                    out.sequenced(p, seq),
                    OutFrame::encode(&group_message(Some(seq)), p),
                    "{p} {seq}"
                );
            }
        }
    }

    #[test]
    fn a_codec_is_encoded_only_when_a_receiver_speaks_it_and_then_once() {
        let out = Outgoing::new(group_message(None));
        let _ = out.frame(Subprotocol::Json);
        let _ = out.sequenced(Subprotocol::JsonReliable, 1);
        assert!(out.protobuf.get().is_none(), "no protobuf receiver yet");
        let (OutFrame::Text(a), OutFrame::Text(b)) =
            (out.frame(Subprotocol::Json), out.frame(Subprotocol::Json))
        else {
            panic!("JSON frames are text");
        };
        assert_eq!(
            a.as_str().as_ptr(),
            b.as_str().as_ptr(),
            "one shared buffer"
        );
        let (OutFrame::Binary(a), OutFrame::Binary(b)) = (
            out.frame(Subprotocol::Protobuf),
            out.frame(Subprotocol::Protobuf),
        ) else {
            panic!("protobuf frames are binary");
        };
        assert_eq!(a.as_ptr(), b.as_ptr(), "one shared buffer");
    }

    #[test]
    fn frames_are_the_websocket_message_of_their_kind_and_logs_hide_binary_content() {
        let connected = ServiceMessage::Connected {
            connection_id: "c".into(),
            user_id: None,
            reconnection_token: Some("s3cr3t".into()),
        };
        let text = OutFrame::encode(&connected, Subprotocol::JsonReliable);
        assert!(!text.for_log().contains("s3cr3t"));
        assert!(matches!(text.into_message(), Message::Text(_)));
        let binary = OutFrame::encode(&connected, Subprotocol::ProtobufReliable);
        assert!(!binary.for_log().contains("s3cr3t"));
        assert_eq!(binary.len(), connected.encode_protobuf().len());
        assert!(matches!(binary.into_message(), Message::Binary(_)));
    }
}
