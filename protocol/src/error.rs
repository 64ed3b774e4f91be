//! The decoding error shared by both codecs.

use std::fmt;

/// A frame that could not be decoded as a protocol message.
///
/// Receivers log it and skip the frame; it never needs to end a connection. A frame that is
/// well-formed but of a kind this version does not know is not an error: it decodes to an
/// `Unknown` message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A JSON frame is not a JSON object (truncated, not JSON, another JSON value, or not
    /// UTF-8).
    InvalidJson(String),
    /// A protobuf frame is not a valid message of its direction: truncated, a wire type that
    /// does not match the field, a length past the end of the frame, a string field that is
    /// not UTF-8, a varint longer than ten bytes. The text is the decoder's description.
    InvalidProtobuf(String),
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
            ProtocolError::InvalidProtobuf(e) => {
                write!(f, "frame is not a valid protobuf message: {e}")
            }
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
