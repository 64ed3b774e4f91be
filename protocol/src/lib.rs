//! The Azure Web PubSub client protocol: typed messages, their JSON and protobuf codecs, and
//! the rules of the wire.
//!
//! The crate is pure: bytes in, values out, and values in, bytes out. It does no I/O and keeps
//! no state, so both sides of the wire share it — the client encodes [`ClientMessage`]s and
//! decodes [`ServiceMessage`]s, the emulator does the reverse, and both apply the same
//! [rules](#rules).
//!
//! # One set of messages, four subprotocols
//!
//! A connection speaks one [`Subprotocol`]: JSON text frames (`json.webpubsub.azure.v1`,
//! `json.reliable.webpubsub.azure.v1`) or protobuf binary frames
//! (`protobuf.webpubsub.azure.v1`, `protobuf.reliable.webpubsub.azure.v1`). The messages are
//! the same in all four, so the logic above the codec is written once: each message type
//! has `encode`/`decode` (JSON), `encode_protobuf`/`decode_protobuf`, and
//! `encode_frame`/`decode_frame`, which pick the codec by subprotocol.
//!
//! ```
//! use webpubsub_protocol::{ClientMessage, Data, Frame, Metadata, ServiceMessage, Subprotocol};
//!
//! let send = ClientMessage::SendToGroup {
//!     group: "room".into(),
//!     ack_id: Some(1),
//!     no_echo: false,
//!     data: Data::from("hello"),
//!     ttl_seconds: None,
//!     metadata: Metadata::new(),
//! };
//! assert_eq!(
//!     send.encode(),
//!     r#"{"type":"sendToGroup","group":"room","ackId":1,"noEcho":false,"dataType":"text","data":"hello"}"#
//! );
//! for p in Subprotocol::ALL {
//!     let frame: Frame = send.encode_frame(p);
//!     assert_eq!(frame.is_binary(), p.is_binary());
//!     assert_eq!(ClientMessage::decode_frame(p, frame.as_bytes()), Ok(send.clone()));
//! }
//!
//! let ack = ServiceMessage::decode(r#"{"type":"ack","ackId":1,"success":true}"#).unwrap();
//! assert_eq!(ack, ServiceMessage::Ack { ack_id: 1, success: true, error: None });
//! assert_eq!(ServiceMessage::decode_protobuf(&ack.encode_protobuf()), Ok(ack));
//! ```
//!
//! What one codec can say and the other cannot (everything else maps one to one):
//! - protobuf has no `fromUserId`: a group message decoded from protobuf has none, and one
//!   encoded to protobuf loses it;
//! - a proto3 string is never absent: an empty user id or disconnect reason is none;
//! - a sequence id of 0 is none in protobuf (0 is never a valid one), and `noEcho: false` is
//!   simply not written;
//! - JSON `invoke` has `"target":"event"`, which protobuf implies.
//!
//! # Payloads
//!
//! A [`Data`] is the payload with its data type:
//!
//! | [`Data`] | JSON (`dataType`, `data`) | protobuf (`MessageData` case) |
//! |---|---|---|
//! | `Text(String)` | `text`, a string | `text_data` |
//! | `Json(Value)` | `json`, the value as is | `json_data`, the value serialised |
//! | `Binary(Vec<u8>)` | `binary`, standard base64 | `binary_data`, the raw bytes |
//! | `Protobuf(Vec<u8>)` | `protobuf`, base64 of the serialised `Any` | `protobuf_data`, the `Any` |
//!
//! [`Data::Protobuf`] holds a serialised `google.protobuf.Any` ([`ProtobufAny`]), and it is
//! the same bytes in both codecs: JSON carries them as base64, protobuf embeds them as the
//! `protobuf_data` message without parsing or re-encoding them. So a payload crosses from a
//! JSON client to a protobuf client (and back) unchanged, and a service relaying between
//! subprotocols needs no conversion. Protobuf `text_data` that holds JSON is text, as it
//! says (the .NET client sends json so: its receivers see text); only `json_data` is JSON,
//! and that is how this crate sends json.
//!
//! # Metadata and TTL
//!
//! A `sendToGroup`, an `event` or an `invoke` may carry [`Metadata`] (string keys to string
//! values), and a `sendToGroup` a time to live (`ttl_seconds`); the service delivers the
//! publisher's metadata with the `message`s it sends and with `invokeResponse`s. On the JSON
//! wire they are `"metadata":{"key":"value"}` (after `data`) and `"ttlSeconds":60`, as
//! Microsoft's emulator reads and writes them; in protobuf the `metadata` map and
//! `ttl_seconds` of the schema. Empty metadata and no TTL are not written at all, so a
//! message without them is byte for byte what it was before they existed, and the empty
//! [`Metadata`] costs no allocation. A message with metadata but without `data` carries
//! empty text (Microsoft's emulator reads it so).
//!
//! # Rules
//!
//! The codecs check the format only; what the service accepts is in functions both sides
//! call: [`ClientMessage::check`] (group and event names, metadata, TTL), and the single
//! rules it is made of — [`check_group_name`], [`check_event_name`], [`check_metadata`]
//! (keys 1–256 HTTP token characters, values at most 1024 bytes of printable ASCII, 8 KiB in
//! all), [`check_ttl_seconds`] (0–300) — plus [`check_message_size`] for an encoded frame
//! (1 MB) and [`check_protobuf_payload`] for a `protobuf` payload. Each refusal is a typed
//! [`RuleError`]. The rules also say which values are secrets ([`redact_query`],
//! [`redact_frame`]).
//!
//! # Forward compatibility
//!
//! Decoding follows the service's rules: a message of a kind this version does not know
//! decodes to an `Unknown` value that the receiver skips — a new JSON `type`, `event`,
//! `from` or `dataType`, a new or preview protobuf case (streaming and group state:
//! upstream cases 13–17, downstream 6–10, and sends that start a stream). A skipped service
//! message keeps its sequence id where it has one, so that a reliable receiver still counts
//! it. Only a frame that is not valid JSON or protobuf, or a known message with a missing or
//! ill-typed field, is a [`ProtocolError`]; no input panics (both codecs are fuzzed, see
//! `protocol/fuzz/`).
//!
//! # Fan-out
//!
//! A service sending one message to many reliable connections encodes it once without a
//! sequence id and gives each receiver its own with [`splice_sequence_id`] (JSON) or
//! [`splice_protobuf_sequence_id`]; the result equals the direct encoding byte for byte.
//!
//! # WebSocket framing
//!
//! [`websocket`] is the frame codec of RFC 6455, sans I/O, for both ends: a
//! [`FrameReader`](websocket::FrameReader) turns the bytes of each read into whole messages
//! (fragments joined, control frames apart, sizes bounded) and keeps bytes only while a frame
//! is incomplete; `write_text`, `write_binary`, `write_close`, ... append frames, masked when
//! the writer is a client. The caller owns the buffers (a loop over many connections shares
//! one read buffer), so an idle connection holds none.
//!
//! # Architecture
//!
//! Modules, lowest first; each uses only those before it (`tests/architecture.rs` checks
//! it): `error` ([`ProtocolError`]) and `websocket` (framing, which knows no message); the values `any`, `data`, `metadata`; `rules`; the
//! message types `client_msg` and `service_msg`, which know no wire format; the codecs
//! `json/` (with a one-pass decoder for the common service frames beside the reference
//! two-pass decoder) and `protobuf/` (messages declared with prost's derive, no build
//! script), which do not know each other; and `subprotocol`, which picks a codec.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod any;
mod client_msg;
mod data;
mod error;
mod json;
mod metadata;
mod protobuf;
mod rules;
mod service_msg;
mod subprotocol;
pub mod websocket;

pub use any::ProtobufAny;
pub use client_msg::ClientMessage;
pub use data::{Data, DataType};
pub use error::ProtocolError;
pub use json::splice_sequence_id;
pub use metadata::Metadata;
pub use protobuf::splice_protobuf_sequence_id;
pub use rules::{
    check_event_name, check_group_name, check_message_size, check_metadata, check_metadata_entry,
    check_protobuf_payload, check_ttl_seconds, is_secret_query_param, redact_frame, redact_query,
    RuleError, MAX_GROUP_NAME_CHARS, MAX_MESSAGE_BYTES, MAX_METADATA_BYTES, MAX_METADATA_KEY_BYTES,
    MAX_METADATA_VALUE_BYTES, MAX_TTL_SECONDS, REDACTED, SECRET_QUERY_PARAMS,
};
pub use service_msg::{AckError, ServiceMessage};
pub use subprotocol::{
    Frame, Subprotocol, JSON_RELIABLE_SUBPROTOCOL, JSON_SUBPROTOCOL, PROTOBUF_RELIABLE_SUBPROTOCOL,
    PROTOBUF_SUBPROTOCOL,
};

/// The README's code blocks, compiled as doctests so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
