//! Messages the service sends to a client (PROTOCOL.md §4).
//!
//! The type and what is true of it whatever the wire; its codecs are in `json/` and
//! `protobuf/`.

use crate::data::Data;
use crate::metadata::Metadata;
use serde::Deserialize;

/// The error of a failed `ack` or `invokeResponse`: `{name, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AckError {
    /// The error's name: `Forbidden`, `InternalServerError`, `Duplicate`,
    /// `InvocationFailed`, or a name a later service version adds.
    pub name: String,
    /// A human-readable explanation (may be empty).
    #[serde(default)]
    pub message: String,
}

impl AckError {
    /// Name of the error the service gives for a repeated ack id.
    pub const DUPLICATE: &'static str = "Duplicate";
    /// Name of the error for a missing permission.
    pub const FORBIDDEN: &'static str = "Forbidden";
    /// Name of the service's transient failure.
    pub const INTERNAL_SERVER_ERROR: &'static str = "InternalServerError";
    /// Name of the error for a failed upstream event handler.
    pub const INVOCATION_FAILED: &'static str = "InvocationFailed";

    /// Builds an error from its name and message.
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> AckError {
        AckError {
            name: name.into(),
            message: message.into(),
        }
    }

    /// `true` for `Duplicate`: the first request with this ack id was executed.
    pub fn is_duplicate(&self) -> bool {
        self.name == Self::DUPLICATE
    }
}

/// A message from the service to a client.
///
/// The same value travels over every subprotocol: [`encode`](Self::encode) and
/// [`decode`](Self::decode) are the JSON codec, [`encode_protobuf`](Self::encode_protobuf) and
/// [`decode_protobuf`](Self::decode_protobuf) the protobuf one, and
/// [`encode_frame`](Self::encode_frame) / [`decode_frame`](Self::decode_frame) pick by
/// [`Subprotocol`](crate::Subprotocol).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServiceMessage {
    /// `system/connected`: the connection (or a recovered session) is ready.
    Connected {
        /// The connection's id; it stays the same across recoveries.
        connection_id: String,
        /// The user the token named, if any.
        user_id: Option<String>,
        /// The token that recovers this session (reliable protocol only).
        reconnection_token: Option<String>,
    },
    /// `system/disconnected`: the service is closing the connection, and why.
    Disconnected {
        /// The reason the service gives.
        message: Option<String>,
    },
    /// `ack`: the outcome of a request that carried an `ackId`.
    Ack {
        /// The request's ack id.
        ack_id: u64,
        /// Whether the request was executed.
        success: bool,
        /// Why it failed (present when `success` is false).
        error: Option<AckError>,
    },
    /// `message` from `group`: something a client published with `sendToGroup`.
    GroupMessage {
        /// The group it was published to.
        group: String,
        /// The payload.
        data: Data,
        /// The publisher's user id, if it had one (JSON only: protobuf has no such field).
        from_user_id: Option<String>,
        /// Its sequence id (reliable protocol only).
        sequence_id: Option<u64>,
        /// The publisher's metadata (empty: none).
        metadata: Metadata,
    },
    /// `message` from `server`: anything the application server sent through REST.
    ServerMessage {
        /// The payload.
        data: Data,
        /// Its sequence id (reliable protocol only).
        sequence_id: Option<u64>,
        /// The metadata the application server sent (empty: none).
        metadata: Metadata,
    },
    /// `pong`: the answer to a `ping`.
    Pong,
    /// `invokeResponse` (preview): the outcome of an `invoke`.
    InvokeResponse {
        /// The invocation it answers.
        invocation_id: String,
        /// Whether the handler succeeded.
        success: bool,
        /// The handler's response, if any.
        data: Option<Data>,
        /// Why it failed (present when `success` is false).
        error: Option<AckError>,
        /// The metadata the event handler answered with (empty: none).
        metadata: Metadata,
    },
    /// A message this version does not know (a new `type`, `event`, `from` or `dataType` in
    /// JSON, a new or preview message case or data case in protobuf); receivers skip it.
    Unknown {
        /// What was not understood, e.g. `type=foo`, `dataType=xml` or
        /// `stream_ack_message`.
        kind: String,
        /// Its sequence id, if it carried one: a receiver still counts it as received,
        /// so that the service does not keep resending it.
        sequence_id: Option<u64>,
    },
}

impl ServiceMessage {
    /// The message's sequence id, if it has one.
    pub fn sequence_id(&self) -> Option<u64> {
        match self {
            ServiceMessage::GroupMessage { sequence_id, .. }
            | ServiceMessage::ServerMessage { sequence_id, .. }
            | ServiceMessage::Unknown { sequence_id, .. } => *sequence_id,
            _ => None,
        }
    }

    /// The message's metadata; empty for the kinds that carry none.
    pub fn metadata(&self) -> &Metadata {
        static NONE: Metadata = Metadata::new();
        match self {
            ServiceMessage::GroupMessage { metadata, .. }
            | ServiceMessage::ServerMessage { metadata, .. }
            | ServiceMessage::InvokeResponse { metadata, .. } => metadata,
            _ => &NONE,
        }
    }
}
