//! The protobuf codec of service messages (PROTOBUF.md "Downstream").

use super::data::{
    from_wire, invalid, metadata_from_wire, metadata_to_wire, required_from_wire, sequence_id,
    to_wire,
};
use super::wire::{
    AckMessage, ConnectedMessage, DataMessage, DisconnectedMessage, Downstream, DownstreamMessage,
    Empty, ErrorMessage, InvokeResponseMessage, System, SystemMessage,
};
use crate::error::ProtocolError;
use crate::service_msg::{AckError, ServiceMessage};
use prost::Message as _;

impl ServiceMessage {
    /// Encodes the message as one protobuf binary frame (a `DownstreamMessage`; the
    /// service's side of the wire).
    ///
    /// What protobuf cannot say is left out: a group message's `from_user_id` (protobuf has
    /// no such field), an empty user id or disconnect reason (a proto3 string is never
    /// absent: empty means none). [`ServiceMessage::Unknown`] encodes as the empty frame.
    pub fn encode_protobuf(&self) -> Vec<u8> {
        downstream(self).encode_to_vec()
    }

    /// Encodes the message as protobuf, appending it to `out`.
    ///
    /// Fields are written in field-number order, so a sender fanning one message out to
    /// many connections can encode it once without a sequence id and give each receiver its
    /// own with [`splice_protobuf_sequence_id`](crate::splice_protobuf_sequence_id).
    pub fn encode_protobuf_into(&self, out: &mut Vec<u8>) {
        let msg = downstream(self);
        out.reserve(msg.encoded_len());
        // A `Vec` grows as needed: prost's only encoding error (a full buffer) cannot occur.
        msg.encode(out).expect("encoding into a Vec");
    }

    /// Decodes one protobuf frame from the service.
    ///
    /// A message case, system case, `from` or data case this version does not know, or a
    /// preview one (streaming, group state: cases 6–10), gives [`ServiceMessage::Unknown`],
    /// with its sequence id where it has one. Absent or 0 sequence ids are none. A malformed
    /// frame is a [`ProtocolError::InvalidProtobuf`].
    pub fn decode_protobuf(bytes: &[u8]) -> Result<ServiceMessage, ProtocolError> {
        let frame = DownstreamMessage::decode(bytes).map_err(invalid)?;
        let unknown = |kind: &str, seq: Option<u64>| {
            Ok(ServiceMessage::Unknown {
                kind: kind.to_owned(),
                sequence_id: seq,
            })
        };
        Ok(match frame.message {
            None => return unknown("unknown message case", None),
            Some(Downstream::Ack(m)) => ServiceMessage::Ack {
                ack_id: m.ack_id,
                success: m.success.unwrap_or(false),
                error: m.error.map(ack_error),
            },
            Some(Downstream::Data(m)) => {
                let seq = sequence_id(m.sequence_id);
                if m.stream.is_some() {
                    return unknown("data_message with stream", seq);
                }
                let group = match m.from.as_str() {
                    "group" => match m.group {
                        Some(group) => Some(group),
                        None => {
                            return Err(ProtocolError::MissingField {
                                message: "message",
                                field: "group",
                            })
                        }
                    },
                    "server" => None,
                    other => return unknown(&format!("message from={other}"), seq),
                };
                let metadata = metadata_from_wire(m.metadata);
                let Some(data) = required_from_wire("message", m.data, &metadata)? else {
                    return unknown("data_message with unknown data case", seq);
                };
                match group {
                    Some(group) => ServiceMessage::GroupMessage {
                        group,
                        data,
                        from_user_id: None,
                        sequence_id: seq,
                        metadata,
                    },
                    None => ServiceMessage::ServerMessage {
                        data,
                        sequence_id: seq,
                        metadata,
                    },
                }
            }
            Some(Downstream::System(m)) => match m.message {
                Some(System::Connected(c)) => ServiceMessage::Connected {
                    connection_id: c.connection_id,
                    user_id: Some(c.user_id).filter(|u| !u.is_empty()),
                    reconnection_token: c.reconnection_token,
                },
                Some(System::Disconnected(d)) => ServiceMessage::Disconnected {
                    message: Some(d.reason).filter(|r| !r.is_empty()),
                },
                None => return unknown("system_message with unknown case", None),
            },
            Some(Downstream::Pong(_)) => ServiceMessage::Pong,
            Some(Downstream::InvokeResponse(m)) => {
                let data = match m.data {
                    None => None,
                    Some(d) => match from_wire("invokeResponse", d)? {
                        Some(d) => Some(d),
                        None => {
                            return unknown("invoke_response_message with unknown data case", None)
                        }
                    },
                };
                ServiceMessage::InvokeResponse {
                    invocation_id: m.invocation_id,
                    success: m.success.unwrap_or(false),
                    data,
                    error: m.error.map(ack_error),
                    metadata: metadata_from_wire(m.metadata),
                }
            }
            Some(Downstream::StreamAck(_)) => return unknown("stream_ack_message", None),
            Some(Downstream::StreamNack(_)) => return unknown("stream_nack_message", None),
            Some(Downstream::StreamClosed(_)) => return unknown("stream_closed_message", None),
            Some(Downstream::GroupStateUpdate(m)) => {
                return unknown("group_state_update_message", sequence_id(m.sequence_id))
            }
            Some(Downstream::GroupStateSnapshot(m)) => {
                return unknown("group_state_snapshot_message", sequence_id(m.sequence_id))
            }
        })
    }
}

fn ack_error(e: ErrorMessage) -> AckError {
    AckError {
        name: e.name,
        message: e.message,
    }
}

fn error_to_wire(e: &AckError) -> ErrorMessage {
    ErrorMessage {
        name: e.name.clone(),
        message: e.message.clone(),
    }
}

/// The wire form of a message; borrowed strings and payloads are copied into it.
fn downstream(msg: &ServiceMessage) -> DownstreamMessage {
    let message = match msg {
        ServiceMessage::Connected {
            connection_id,
            user_id,
            reconnection_token,
        } => Downstream::System(SystemMessage {
            message: Some(System::Connected(ConnectedMessage {
                connection_id: connection_id.clone(),
                user_id: user_id.clone().unwrap_or_default(),
                reconnection_token: reconnection_token.clone(),
            })),
        }),
        ServiceMessage::Disconnected { message } => Downstream::System(SystemMessage {
            message: Some(System::Disconnected(DisconnectedMessage {
                reason: message.clone().unwrap_or_default(),
            })),
        }),
        ServiceMessage::Ack {
            ack_id,
            success,
            error,
        } => Downstream::Ack(AckMessage {
            ack_id: *ack_id,
            success: Some(*success),
            error: error.as_ref().map(error_to_wire),
        }),
        ServiceMessage::GroupMessage {
            group,
            data,
            from_user_id: _,
            sequence_id,
            metadata,
        } => Downstream::Data(DataMessage {
            from: "group".to_owned(),
            group: Some(group.clone()),
            data: Some(to_wire(data)),
            sequence_id: *sequence_id,
            metadata: metadata_to_wire(metadata),
            stream: None,
        }),
        ServiceMessage::ServerMessage {
            data,
            sequence_id,
            metadata,
        } => Downstream::Data(DataMessage {
            from: "server".to_owned(),
            group: None,
            data: Some(to_wire(data)),
            sequence_id: *sequence_id,
            metadata: metadata_to_wire(metadata),
            stream: None,
        }),
        ServiceMessage::Pong => Downstream::Pong(Empty {}),
        ServiceMessage::InvokeResponse {
            invocation_id,
            success,
            data,
            error,
            metadata,
        } => Downstream::InvokeResponse(InvokeResponseMessage {
            invocation_id: invocation_id.clone(),
            success: Some(*success),
            data: data.as_ref().map(to_wire),
            error: error.as_ref().map(error_to_wire),
            metadata: metadata_to_wire(metadata),
        }),
        ServiceMessage::Unknown { .. } => return DownstreamMessage { message: None },
    };
    DownstreamMessage {
        message: Some(message),
    }
}
