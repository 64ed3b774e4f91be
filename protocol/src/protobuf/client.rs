//! The protobuf codec of client messages (PROTOBUF.md "Upstream").

use super::data::{
    from_wire, invalid, metadata_from_wire, metadata_to_wire, required_from_wire, to_wire,
};
use super::wire::{
    CancelInvocationMessage, Empty, EventMessage, GroupMessage, InvokeEventMessage,
    SendToGroupMessage, SequenceAckMessage, Upstream, UpstreamMessage,
};
use crate::client_msg::ClientMessage;
use crate::error::ProtocolError;
use prost::Message as _;

impl ClientMessage {
    /// Encodes the message as one protobuf binary frame (an `UpstreamMessage`).
    ///
    /// Optional fields without a value are omitted; `noEcho: false` is omitted too (it is the
    /// default). [`ClientMessage::Unknown`] encodes as the empty frame, which decodes as
    /// unknown again.
    pub fn encode_protobuf(&self) -> Vec<u8> {
        upstream(self).encode_to_vec()
    }

    /// Encodes the message as protobuf, appending it to `out` (lets a writer reuse one
    /// buffer).
    pub fn encode_protobuf_into(&self, out: &mut Vec<u8>) {
        let msg = upstream(self);
        out.reserve(msg.encoded_len());
        // A `Vec` grows as needed: prost's only encoding error (a full buffer) cannot occur.
        msg.encode(out).expect("encoding into a Vec");
    }

    /// Decodes a protobuf frame a client sent (the service's side of the wire).
    ///
    /// A message case or data case this version does not know, or a preview one
    /// (streaming, group state: cases 13–17, and sends that start a stream), gives
    /// [`ClientMessage::Unknown`]. A malformed frame is a
    /// [`ProtocolError::InvalidProtobuf`]. As in JSON, the service's rules are not applied
    /// here: call [`check`](Self::check) on the result.
    pub fn decode_protobuf(bytes: &[u8]) -> Result<ClientMessage, ProtocolError> {
        let frame = UpstreamMessage::decode(bytes).map_err(invalid)?;
        let unknown = |kind: &str| {
            Ok(ClientMessage::Unknown {
                kind: kind.to_owned(),
            })
        };
        Ok(match frame.message {
            None => return unknown("unknown message case"),
            Some(Upstream::SendToGroup(m)) => {
                if m.stream.is_some() {
                    return unknown("send_to_group_message with stream");
                }
                let metadata = metadata_from_wire(m.metadata);
                let Some(data) = required_from_wire("sendToGroup", m.data, &metadata)? else {
                    return unknown("send_to_group_message with unknown data case");
                };
                ClientMessage::SendToGroup {
                    group: m.group,
                    ack_id: m.ack_id,
                    no_echo: m.no_echo.unwrap_or(false),
                    data,
                    ttl_seconds: m.ttl_seconds,
                    metadata,
                }
            }
            Some(Upstream::Event(m)) => {
                if m.stream.is_some() {
                    return unknown("event_message with stream");
                }
                let metadata = metadata_from_wire(m.metadata);
                let Some(data) = required_from_wire("event", m.data, &metadata)? else {
                    return unknown("event_message with unknown data case");
                };
                ClientMessage::Event {
                    event: m.event,
                    ack_id: m.ack_id,
                    data,
                    metadata,
                }
            }
            Some(Upstream::JoinGroup(m)) => ClientMessage::JoinGroup {
                group: m.group,
                ack_id: m.ack_id,
            },
            Some(Upstream::LeaveGroup(m)) => ClientMessage::LeaveGroup {
                group: m.group,
                ack_id: m.ack_id,
            },
            Some(Upstream::SequenceAck(m)) => ClientMessage::SequenceAck {
                sequence_id: m.sequence_id,
            },
            Some(Upstream::Ping(_)) => ClientMessage::Ping,
            Some(Upstream::InvokeEvent(m)) => {
                if m.stream.is_some() {
                    return unknown("invoke_event_message with stream");
                }
                let data = match m.data {
                    None => None,
                    Some(d) => match from_wire("invoke", d)? {
                        Some(d) => Some(d),
                        None => return unknown("invoke_event_message with unknown data case"),
                    },
                };
                ClientMessage::Invoke {
                    invocation_id: m.invocation_id,
                    event: m.event,
                    data,
                    metadata: metadata_from_wire(m.metadata),
                }
            }
            Some(Upstream::CancelInvocation(m)) => ClientMessage::CancelInvocation {
                invocation_id: m.invocation_id,
            },
            Some(Upstream::StreamData(_)) => return unknown("stream_data_message"),
            Some(Upstream::StreamEnd(_)) => return unknown("stream_end_message"),
            Some(Upstream::SetGroupState(_)) => return unknown("set_group_state_message"),
            Some(Upstream::SubscribeGroupState(_)) => {
                return unknown("subscribe_group_state_message")
            }
            Some(Upstream::UnsubscribeGroupState(_)) => {
                return unknown("unsubscribe_group_state_message")
            }
        })
    }
}

/// The wire form of a message; borrowed strings and payloads are copied into it.
fn upstream(msg: &ClientMessage) -> UpstreamMessage {
    let message = match msg {
        ClientMessage::JoinGroup { group, ack_id } => Upstream::JoinGroup(GroupMessage {
            group: group.clone(),
            ack_id: *ack_id,
        }),
        ClientMessage::LeaveGroup { group, ack_id } => Upstream::LeaveGroup(GroupMessage {
            group: group.clone(),
            ack_id: *ack_id,
        }),
        ClientMessage::SendToGroup {
            group,
            ack_id,
            no_echo,
            data,
            ttl_seconds,
            metadata,
        } => Upstream::SendToGroup(SendToGroupMessage {
            group: group.clone(),
            ack_id: *ack_id,
            data: Some(to_wire(data)),
            no_echo: no_echo.then_some(true),
            ttl_seconds: *ttl_seconds,
            metadata: metadata_to_wire(metadata),
            stream: None,
        }),
        ClientMessage::Event {
            event,
            ack_id,
            data,
            metadata,
        } => Upstream::Event(EventMessage {
            event: event.clone(),
            data: Some(to_wire(data)),
            ack_id: *ack_id,
            metadata: metadata_to_wire(metadata),
            stream: None,
        }),
        ClientMessage::SequenceAck { sequence_id } => Upstream::SequenceAck(SequenceAckMessage {
            sequence_id: *sequence_id,
        }),
        ClientMessage::Ping => Upstream::Ping(Empty {}),
        ClientMessage::Invoke {
            invocation_id,
            event,
            data,
            metadata,
        } => Upstream::InvokeEvent(InvokeEventMessage {
            event: event.clone(),
            invocation_id: invocation_id.clone(),
            data: data.as_ref().map(to_wire),
            metadata: metadata_to_wire(metadata),
            stream: None,
        }),
        ClientMessage::CancelInvocation { invocation_id } => {
            Upstream::CancelInvocation(CancelInvocationMessage {
                invocation_id: invocation_id.clone(),
            })
        }
        ClientMessage::Unknown { .. } => return UpstreamMessage { message: None },
    };
    UpstreamMessage {
        message: Some(message),
    }
}
