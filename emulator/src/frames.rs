//! Frames on their way to a socket: a session's queued frame, and one message fanned out to
//! many sessions, encoded at most once per codec.
//!
//! A session speaks one [`Subprotocol`]: JSON in text frames or protobuf in binary frames
//! (PROTOBUF.md). Everything a session sends is encoded in its own subprotocol; a message to
//! many sessions (a group, a user, the hub) is encoded once for the JSON receivers and once
//! for the protobuf ones — each only when the first receiver that speaks it asks — and each
//! reliable receiver gets its own sequence id spliced into that encoding.
//!
//! A *simple* WebSocket client (PROTOCOL.md §2) speaks no subprotocol: it receives a
//! message's data alone, as a text frame (text and JSON) or a binary frame (binary and
//! protobuf), and nothing else — no `connected`, acks or pongs.

use std::cell::OnceCell;
use std::fmt;
use std::time::Instant;
use tungstenite::{Bytes, Utf8Bytes};
use webpubsub_protocol::{
    redact_frame, splice_protobuf_sequence_id, splice_sequence_id, Data, ServiceMessage,
    Subprotocol,
};

/// What a session speaks: one of the four PubSub subprotocols, or none (a simple WebSocket
/// client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Speaks {
    PubSub(Subprotocol),
    Simple,
}

impl Speaks {
    /// The PubSub subprotocol, if it speaks one.
    pub fn subprotocol(self) -> Option<Subprotocol> {
        match self {
            Speaks::PubSub(p) => Some(p),
            Speaks::Simple => None,
        }
    }

    /// Whether it speaks a reliable subprotocol (sequence ids, recovery).
    pub fn is_reliable(self) -> bool {
        self.subprotocol().is_some_and(Subprotocol::is_reliable)
    }

    /// `msg` as a frame for it: encoded in its subprotocol, or for a simple client the data
    /// of a group or server message (`None` for every other message).
    pub fn frame(self, msg: &ServiceMessage) -> Option<OutFrame> {
        match self {
            Speaks::PubSub(p) => Some(OutFrame::encode(msg, p)),
            Speaks::Simple => match msg {
                ServiceMessage::GroupMessage { data, .. }
                | ServiceMessage::ServerMessage { data, .. } => Some(OutFrame::raw(data)),
                _ => None,
            },
        }
    }
}

impl fmt::Display for Speaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Speaks::PubSub(p) => p.fmt(f),
            Speaks::Simple => f.write_str("no subprotocol (a simple WebSocket client)"),
        }
    }
}

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

    /// A simple client's frame of `data`: text for text and JSON, binary for binary and
    /// protobuf (the serialised `Any`).
    pub fn raw(data: &Data) -> OutFrame {
        match data {
            Data::Text(t) => OutFrame::Text(Utf8Bytes::from(t.clone())),
            Data::Json(v) => OutFrame::Text(Utf8Bytes::from(v.to_string())),
            Data::Binary(b) | Data::Protobuf(b) => OutFrame::Binary(Bytes::from(b.clone())),
        }
    }

    /// The payload's length in bytes (what the unacked byte limit counts).
    pub fn len(&self) -> usize {
        match self {
            OutFrame::Text(t) => t.len(),
            OutFrame::Binary(b) => b.len(),
        }
    }

    /// The WebSocket message that carries it (the tests read frames back through
    /// tungstenite; the I/O loop writes them with its own framing).
    #[cfg(test)]
    pub fn into_message(self) -> tungstenite::Message {
        match self {
            OutFrame::Text(t) => tungstenite::Message::Text(t),
            OutFrame::Binary(b) => tungstenite::Message::Binary(b),
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
    /// The frame for simple clients: the data alone.
    raw: OnceCell<OutFrame>,
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
            raw: OnceCell::new(),
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

    /// The frame for a simple client: the message's data alone (shared).
    pub fn raw(&self) -> OutFrame {
        self.raw
            .get_or_init(|| match &self.msg {
                ServiceMessage::GroupMessage { data, .. }
                | ServiceMessage::ServerMessage { data, .. } => OutFrame::raw(data),
                _ => unreachable!("only group and server messages fan out"),
            })
            .clone()
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
    fn simple_clients_get_the_data_alone_text_or_binary_and_no_other_message() {
        let text = ServiceMessage::ServerMessage {
            data: Data::from("hi"),
            sequence_id: None,
            metadata: Metadata::from([("k", "v")]),
        };
        assert_eq!(
            Speaks::Simple.frame(&text),
            Some(OutFrame::Text(Utf8Bytes::from("hi")))
        );
        let json = Outgoing::new(ServiceMessage::ServerMessage {
            data: Data::Json(serde_json::json!({"a": 1})),
            sequence_id: None,
            metadata: Metadata::new(),
        });
        assert_eq!(json.raw(), OutFrame::Text(Utf8Bytes::from(r#"{"a":1}"#)));
        let binary = Outgoing::new(group_message(None));
        let OutFrame::Binary(b) = binary.raw() else {
            panic!("protobuf data goes in a binary frame");
        };
        assert_eq!(
            &b[..],
            &ProtobufAny::new("t", vec![1, 2]).to_bytes()[..],
            "the serialised Any"
        );
        assert_eq!(Speaks::Simple.frame(&ServiceMessage::Pong), None);
        assert!(!Speaks::Simple.is_reliable());
        assert!(Speaks::PubSub(Subprotocol::JsonReliable).is_reliable());
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
        assert!(matches!(text.into_message(), tungstenite::Message::Text(_)));
        let binary = OutFrame::encode(&connected, Subprotocol::ProtobufReliable);
        assert!(!binary.for_log().contains("s3cr3t"));
        assert_eq!(binary.len(), connected.encode_protobuf().len());
        assert!(matches!(
            binary.into_message(),
            tungstenite::Message::Binary(_)
        ));
    }
}
