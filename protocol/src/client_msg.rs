//! Messages a client sends to the service (PROTOCOL.md §3).
//!
//! The type and what is true of it whatever the wire; its codecs are in `json/` and
//! `protobuf/`.

use crate::data::Data;
use crate::metadata::Metadata;
use crate::rules::{
    check_event_name, check_group_name, check_metadata, check_ttl_seconds, RuleError,
};

/// A message from a client to the service.
///
/// The same value travels over every subprotocol: [`encode`](Self::encode) and
/// [`decode`](Self::decode) are the JSON codec, [`encode_protobuf`](Self::encode_protobuf) and
/// [`decode_protobuf`](Self::decode_protobuf) the protobuf one, and
/// [`encode_frame`](Self::encode_frame) / [`decode_frame`](Self::decode_frame) pick by
/// [`Subprotocol`](crate::Subprotocol).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientMessage {
    /// `joinGroup`: add this connection to a group.
    JoinGroup {
        /// The group's name.
        group: String,
        /// Ask for an `ack` with this id; `None` is fire-and-forget.
        ack_id: Option<u64>,
    },
    /// `leaveGroup`: remove this connection from a group.
    LeaveGroup {
        /// The group's name.
        group: String,
        /// Ask for an `ack` with this id; `None` is fire-and-forget.
        ack_id: Option<u64>,
    },
    /// `sendToGroup`: publish to every connection in a group.
    SendToGroup {
        /// The group's name.
        group: String,
        /// Ask for an `ack` with this id; `None` is fire-and-forget.
        ack_id: Option<u64>,
        /// Do not deliver the message back to this connection.
        no_echo: bool,
        /// The payload.
        data: Data,
        /// How long the service may hold the message for a receiver, in seconds (0 to
        /// [`MAX_TTL_SECONDS`](crate::MAX_TTL_SECONDS)); `None` leaves it to the service.
        /// JSON `ttlSeconds`, protobuf `ttl_seconds`.
        ttl_seconds: Option<u32>,
        /// Metadata the receivers get with the message (empty: none).
        metadata: Metadata,
    },
    /// `event`: send an event to the upstream event handler.
    Event {
        /// The event's name.
        event: String,
        /// Ask for an `ack` with this id; `None` is fire-and-forget.
        ack_id: Option<u64>,
        /// The payload.
        data: Data,
        /// Metadata the event handler gets with the event (empty: none).
        metadata: Metadata,
    },
    /// `sequenceAck`: every message up to this sequence id has arrived (reliable only).
    SequenceAck {
        /// The largest sequence id received.
        sequence_id: u64,
    },
    /// `ping`: asks the service for a `pong`.
    Ping,
    /// `invoke` (preview): a request to the event handler that expects a response.
    Invoke {
        /// The caller's id for this invocation.
        invocation_id: String,
        /// The event's name.
        event: String,
        /// The payload, if any.
        data: Option<Data>,
        /// Metadata the event handler gets with the request (empty: none).
        metadata: Metadata,
    },
    /// `cancelInvocation` (preview): the caller no longer waits for an invocation.
    CancelInvocation {
        /// The invocation to cancel.
        invocation_id: String,
    },
    /// A message of a kind this version does not know (a new `type` or `dataType` in JSON,
    /// a new or preview message case or data case in protobuf); receivers skip it.
    Unknown {
        /// What was not understood: the JSON `type` (empty if it was missing or not a
        /// string), or the protobuf case, e.g. `stream_data_message`.
        kind: String,
    },
}

impl ClientMessage {
    /// The ack id the message asks for, if any.
    pub fn ack_id(&self) -> Option<u64> {
        match self {
            ClientMessage::JoinGroup { ack_id, .. }
            | ClientMessage::LeaveGroup { ack_id, .. }
            | ClientMessage::SendToGroup { ack_id, .. }
            | ClientMessage::Event { ack_id, .. } => *ack_id,
            _ => None,
        }
    }

    /// The message's metadata; empty for the kinds that carry none.
    pub fn metadata(&self) -> &Metadata {
        static NONE: Metadata = Metadata::new();
        match self {
            ClientMessage::SendToGroup { metadata, .. }
            | ClientMessage::Event { metadata, .. }
            | ClientMessage::Invoke { metadata, .. } => metadata,
            _ => &NONE,
        }
    }

    /// Checks the message against the service's rules for its fields: group names
    /// ([`check_group_name`]), event names ([`check_event_name`]), metadata
    /// ([`check_metadata`]) and the TTL ([`check_ttl_seconds`]). A client calls it before
    /// sending, the service side on receipt; the encoded frame's size is checked apart
    /// ([`check_message_size`](crate::check_message_size)), and so is a protobuf payload
    /// ([`check_protobuf_payload`](crate::check_protobuf_payload)).
    ///
    /// ```
    /// use webpubsub_protocol::{ClientMessage, Data, Metadata, RuleError};
    /// let msg = ClientMessage::SendToGroup {
    ///     group: "room".into(),
    ///     ack_id: None,
    ///     no_echo: false,
    ///     data: Data::from("hi"),
    ///     ttl_seconds: Some(301),
    ///     metadata: Metadata::new(),
    /// };
    /// assert_eq!(msg.check(), Err(RuleError::TtlOutOfRange { seconds: 301 }));
    /// ```
    pub fn check(&self) -> Result<(), RuleError> {
        match self {
            ClientMessage::JoinGroup { group, .. } | ClientMessage::LeaveGroup { group, .. } => {
                check_group_name(group)
            }
            ClientMessage::SendToGroup {
                group,
                ttl_seconds,
                metadata,
                ..
            } => {
                check_group_name(group)?;
                if let Some(ttl) = ttl_seconds {
                    check_ttl_seconds(*ttl)?;
                }
                check_metadata(metadata)
            }
            ClientMessage::Event {
                event, metadata, ..
            }
            | ClientMessage::Invoke {
                event, metadata, ..
            } => {
                check_event_name(event)?;
                check_metadata(metadata)
            }
            ClientMessage::SequenceAck { .. }
            | ClientMessage::Ping
            | ClientMessage::CancelInvocation { .. }
            | ClientMessage::Unknown { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_applies_the_rules_of_each_field() {
        let send = |group: &str, ttl, metadata| ClientMessage::SendToGroup {
            group: group.into(),
            ack_id: None,
            no_echo: false,
            data: Data::from("x"),
            ttl_seconds: ttl,
            metadata,
        };
        assert_eq!(send("g", Some(300), Metadata::new()).check(), Ok(()));
        assert_eq!(send("g", None, Metadata::new()).check(), Ok(()));
        assert_eq!(
            send("", None, Metadata::new()).check(),
            Err(RuleError::EmptyGroupName)
        );
        assert_eq!(
            send("g", Some(301), Metadata::new()).check(),
            Err(RuleError::TtlOutOfRange { seconds: 301 })
        );
        assert!(matches!(
            send("g", None, Metadata::from([("bad key", "v")])).check(),
            Err(RuleError::InvalidMetadataKey { .. })
        ));
        let invoke = ClientMessage::Invoke {
            invocation_id: "1".into(),
            event: String::new(),
            data: None,
            metadata: Metadata::new(),
        };
        assert_eq!(invoke.check(), Err(RuleError::EmptyEventName));
        assert_eq!(ClientMessage::Ping.check(), Ok(()));
    }

    #[test]
    fn metadata_is_empty_for_kinds_without_it() {
        assert!(ClientMessage::Ping.metadata().is_empty());
        let ev = ClientMessage::Event {
            event: "e".into(),
            ack_id: Some(1),
            data: Data::from("x"),
            metadata: Metadata::from([("k", "v")]),
        };
        assert_eq!(ev.metadata().get("k"), Some("v"));
        assert_eq!(ev.ack_id(), Some(1));
    }
}
