//! The Web PubSub JSON subprotocols: typed messages and their codec.
//!
//! This module is pure: text in, values out, and values in, text out. It does no I/O and
//! keeps no state, so both sides of the wire share it — the client encodes
//! [`ClientMessage`]s and decodes [`ServiceMessage`]s, the emulator does the reverse.
//!
//! Decoding follows the forward-compatibility rules of the service: a message whose
//! `type`, `event`, `from` or `dataType` is unknown decodes to an `Unknown` value that the
//! receiver skips; only text that is not JSON, or a known message with a missing or
//! ill-typed field, is a [`ProtocolError`].
//!
//! ```
//! use webpubsub_protocol::{ClientMessage, Data, ServiceMessage};
//!
//! let frame = ClientMessage::SendToGroup {
//!     group: "room".into(),
//!     ack_id: Some(1),
//!     no_echo: false,
//!     data: Data::from("hello"),
//! }
//! .encode();
//! assert_eq!(
//!     frame,
//!     r#"{"type":"sendToGroup","group":"room","ackId":1,"noEcho":false,"dataType":"text","data":"hello"}"#
//! );
//!
//! let msg = ServiceMessage::decode(r#"{"type":"ack","ackId":1,"success":true}"#).unwrap();
//! assert_eq!(msg, ServiceMessage::Ack { ack_id: 1, success: true, error: None });
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client_msg;
mod data;
mod fast;
mod raw;
mod rules;
mod service_msg;

pub use client_msg::ClientMessage;
pub use data::{Data, DataType};
pub use rules::{
    check_event_name, check_group_name, check_message_size, is_secret_query_param, redact_frame,
    redact_query, RuleError, MAX_GROUP_NAME_CHARS, MAX_MESSAGE_BYTES, REDACTED,
    SECRET_QUERY_PARAMS,
};
pub use service_msg::{splice_sequence_id, AckError, ServiceMessage};

use std::fmt;

/// The reliable JSON subprotocol (`json.reliable.webpubsub.azure.v1`): sequence ids,
/// sequence acks and session recovery.
pub const JSON_RELIABLE_SUBPROTOCOL: &str = "json.reliable.webpubsub.azure.v1";
/// The plain JSON subprotocol (`json.webpubsub.azure.v1`): no sequence ids, no recovery.
pub const JSON_SUBPROTOCOL: &str = "json.webpubsub.azure.v1";

/// A frame that could not be decoded as a protocol message.
///
/// Receivers log it and skip the frame; it never needs to end a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame is not a JSON object (truncated, not JSON, or another JSON value).
    InvalidJson(String),
    /// A known message lacks a field it needs.
    MissingField {
        /// The message kind, e.g. `ack` or `message`.
        message: &'static str,
        /// The field's wire name, e.g. `ackId`.
        field: &'static str,
    },
    /// A field of a known message has a value of the wrong type or out of range.
    InvalidField {
        /// The message kind, e.g. `ack` or `message`.
        message: &'static str,
        /// The field's wire name, e.g. `ackId`.
        field: &'static str,
        /// Why the value was refused.
        reason: String,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::InvalidJson(e) => write!(f, "frame is not a JSON object: {e}"),
            ProtocolError::MissingField { message, field } => {
                write!(f, "`{message}` message lacks required field `{field}`")
            }
            ProtocolError::InvalidField {
                message,
                field,
                reason,
            } => write!(f, "`{message}` message has an invalid `{field}`: {reason}"),
        }
    }
}

impl std::error::Error for ProtocolError {}
