//! Messages a client sends to the service (PROTOCOL.md §3).

use super::data::{push_json_str, push_u64, Data};
use super::raw::{opt_str, optional, required, RawFrame};
use super::ProtocolError;

/// A message from a client to the service.
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
    },
    /// `event`: send an event to the upstream event handler.
    Event {
        /// The event's name.
        event: String,
        /// Ask for an `ack` with this id; `None` is fire-and-forget.
        ack_id: Option<u64>,
        /// The payload.
        data: Data,
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
    },
    /// `cancelInvocation` (preview): the caller no longer waits for an invocation.
    CancelInvocation {
        /// The invocation to cancel.
        invocation_id: String,
    },
    /// A message whose `type` this version does not know; receivers skip it.
    Unknown {
        /// The `type` field, or empty if it was missing or not a string.
        kind: String,
    },
}

impl ClientMessage {
    /// Encodes the message as one JSON text frame. Optional fields without a value are
    /// omitted, never sent as `null`.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        out
    }

    /// An upper estimate of the encoded length (exact unless strings need escaping or the
    /// payload is JSON), so that [`encode`](Self::encode) allocates once.
    fn encoded_len_hint(&self) -> usize {
        // The longest fixed text: type, field names, a 20-digit ack id, the dataType.
        const FIXED: usize = 120;
        let data = |d: &Data| match d {
            Data::Text(s) => s.len(),
            Data::Json(_) => 64,
            Data::Binary(b) | Data::Protobuf(b) => b.len().div_ceil(3) * 4,
        };
        FIXED
            + match self {
                ClientMessage::JoinGroup { group, .. }
                | ClientMessage::LeaveGroup { group, .. } => group.len(),
                ClientMessage::SendToGroup { group, data: d, .. } => group.len() + data(d),
                ClientMessage::Event { event, data: d, .. } => event.len() + data(d),
                ClientMessage::Invoke {
                    invocation_id,
                    event,
                    data: d,
                } => invocation_id.len() + event.len() + d.as_ref().map_or(0, data),
                ClientMessage::CancelInvocation { invocation_id } => invocation_id.len(),
                ClientMessage::Unknown { kind } => kind.len(),
                ClientMessage::SequenceAck { .. } | ClientMessage::Ping => 0,
            }
    }

    /// Encodes the message, appending it to `out` (lets a writer reuse one buffer).
    pub fn encode_into(&self, out: &mut String) {
        match self {
            ClientMessage::JoinGroup { group, ack_id } => {
                out.push_str("{\"type\":\"joinGroup\",\"group\":");
                push_json_str(out, group);
                push_ack_id(out, *ack_id);
            }
            ClientMessage::LeaveGroup { group, ack_id } => {
                out.push_str("{\"type\":\"leaveGroup\",\"group\":");
                push_json_str(out, group);
                push_ack_id(out, *ack_id);
            }
            ClientMessage::SendToGroup {
                group,
                ack_id,
                no_echo,
                data,
            } => {
                out.push_str("{\"type\":\"sendToGroup\",\"group\":");
                push_json_str(out, group);
                push_ack_id(out, *ack_id);
                out.push_str(if *no_echo {
                    ",\"noEcho\":true"
                } else {
                    ",\"noEcho\":false"
                });
                data.write_fields(out);
            }
            ClientMessage::Event {
                event,
                ack_id,
                data,
            } => {
                out.push_str("{\"type\":\"event\",\"event\":");
                push_json_str(out, event);
                push_ack_id(out, *ack_id);
                data.write_fields(out);
            }
            ClientMessage::SequenceAck { sequence_id } => {
                out.push_str("{\"type\":\"sequenceAck\",\"sequenceId\":");
                push_u64(out, *sequence_id);
            }
            ClientMessage::Ping => out.push_str("{\"type\":\"ping\""),
            ClientMessage::Invoke {
                invocation_id,
                event,
                data,
            } => {
                out.push_str("{\"type\":\"invoke\",\"invocationId\":");
                push_json_str(out, invocation_id);
                out.push_str(",\"target\":\"event\",\"event\":");
                push_json_str(out, event);
                if let Some(data) = data {
                    data.write_fields(out);
                }
            }
            ClientMessage::CancelInvocation { invocation_id } => {
                out.push_str("{\"type\":\"cancelInvocation\",\"invocationId\":");
                push_json_str(out, invocation_id);
            }
            ClientMessage::Unknown { kind } => {
                out.push_str("{\"type\":");
                push_json_str(out, kind);
            }
        }
        out.push('}');
    }

    /// Decodes a frame a client sent (the service's side of the wire).
    ///
    /// An unknown `type` or `dataType` gives [`ClientMessage::Unknown`]; a missing
    /// `dataType` means json, as the service reads it.
    pub fn decode(text: &str) -> Result<ClientMessage, ProtocolError> {
        let raw = RawFrame::parse(text)?;
        let kind = raw.kind();
        let unknown = || ClientMessage::Unknown {
            kind: kind.as_deref().unwrap_or("").to_owned(),
        };
        Ok(match kind.as_deref() {
            Some("joinGroup") => ClientMessage::JoinGroup {
                group: required("joinGroup", "group", raw.group)?,
                ack_id: optional("joinGroup", "ackId", raw.ack_id)?,
            },
            Some("leaveGroup") => ClientMessage::LeaveGroup {
                group: required("leaveGroup", "group", raw.group)?,
                ack_id: optional("leaveGroup", "ackId", raw.ack_id)?,
            },
            Some("sendToGroup") => {
                let Some(data) = Data::decode("sendToGroup", raw.data_type, raw.data)? else {
                    return Ok(unknown());
                };
                ClientMessage::SendToGroup {
                    group: required("sendToGroup", "group", raw.group)?,
                    ack_id: optional("sendToGroup", "ackId", raw.ack_id)?,
                    no_echo: optional("sendToGroup", "noEcho", raw.no_echo)?.unwrap_or(false),
                    data,
                }
            }
            Some("event") => {
                let Some(data) = Data::decode("event", raw.data_type, raw.data)? else {
                    return Ok(unknown());
                };
                ClientMessage::Event {
                    event: required("event", "event", raw.event)?,
                    ack_id: optional("event", "ackId", raw.ack_id)?,
                    data,
                }
            }
            Some("sequenceAck") => ClientMessage::SequenceAck {
                sequence_id: required("sequenceAck", "sequenceId", raw.sequence_id)?,
            },
            Some("ping") => ClientMessage::Ping,
            Some("invoke") => {
                if let Some(target) = raw.target.and_then(opt_str) {
                    if target != "event" {
                        return Ok(unknown());
                    }
                }
                let data = if raw.data.is_some() {
                    match Data::decode("invoke", raw.data_type, raw.data)? {
                        Some(data) => Some(data),
                        None => return Ok(unknown()),
                    }
                } else {
                    None
                };
                ClientMessage::Invoke {
                    invocation_id: required("invoke", "invocationId", raw.invocation_id)?,
                    event: required("invoke", "event", raw.event)?,
                    data,
                }
            }
            Some("cancelInvocation") => ClientMessage::CancelInvocation {
                invocation_id: required("cancelInvocation", "invocationId", raw.invocation_id)?,
            },
            _ => unknown(),
        })
    }

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
}

fn push_ack_id(out: &mut String, ack_id: Option<u64>) {
    if let Some(id) = ack_id {
        out.push_str(",\"ackId\":");
        push_u64(out, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(msg: ClientMessage, wire: serde_json::Value) {
        let text = msg.encode();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, wire, "encoding of {msg:?}");
        assert_eq!(
            ClientMessage::decode(&text).unwrap(),
            msg,
            "decoding {text}"
        );
    }

    #[test]
    fn join_and_leave_group_round_trip() {
        round_trip(
            ClientMessage::JoinGroup {
                group: "g1".into(),
                ack_id: Some(1),
            },
            json!({"type":"joinGroup","group":"g1","ackId":1}),
        );
        round_trip(
            ClientMessage::LeaveGroup {
                group: "g1".into(),
                ack_id: None,
            },
            json!({"type":"leaveGroup","group":"g1"}),
        );
    }

    #[test]
    fn send_to_group_with_each_data_type_round_trips() {
        round_trip(
            ClientMessage::SendToGroup {
                group: "g".into(),
                ack_id: Some(u64::MAX),
                no_echo: true,
                data: Data::Text("text data".into()),
            },
            json!({"type":"sendToGroup","group":"g","ackId":u64::MAX,"noEcho":true,"dataType":"text","data":"text data"}),
        );
        round_trip(
            ClientMessage::SendToGroup {
                group: "g".into(),
                ack_id: None,
                no_echo: false,
                data: Data::Json(json!({"hello":"world"})),
            },
            json!({"type":"sendToGroup","group":"g","noEcho":false,"dataType":"json","data":{"hello":"world"}}),
        );
        round_trip(
            ClientMessage::SendToGroup {
                group: "g".into(),
                ack_id: Some(2),
                no_echo: false,
                data: Data::Binary(b"\x00\xffbin".to_vec()),
            },
            json!({"type":"sendToGroup","group":"g","ackId":2,"noEcho":false,"dataType":"binary","data":"AP9iaW4="}),
        );
        round_trip(
            ClientMessage::SendToGroup {
                group: "g".into(),
                ack_id: Some(3),
                no_echo: false,
                data: Data::Protobuf(vec![8, 1]),
            },
            json!({"type":"sendToGroup","group":"g","ackId":3,"noEcho":false,"dataType":"protobuf","data":"CAE="}),
        );
    }

    #[test]
    fn event_sequence_ack_and_ping_round_trip() {
        round_trip(
            ClientMessage::Event {
                event: "ev".into(),
                ack_id: Some(5),
                data: Data::Text("x".into()),
            },
            json!({"type":"event","event":"ev","ackId":5,"dataType":"text","data":"x"}),
        );
        round_trip(
            ClientMessage::SequenceAck { sequence_id: 42 },
            json!({"type":"sequenceAck","sequenceId":42}),
        );
        round_trip(ClientMessage::Ping, json!({"type":"ping"}));
    }

    #[test]
    fn invoke_and_cancel_round_trip() {
        round_trip(
            ClientMessage::Invoke {
                invocation_id: "1".into(),
                event: "echo".into(),
                data: Some(Data::Text("hi".into())),
            },
            json!({"type":"invoke","invocationId":"1","target":"event","event":"echo","dataType":"text","data":"hi"}),
        );
        round_trip(
            ClientMessage::Invoke {
                invocation_id: "2".into(),
                event: "noData".into(),
                data: None,
            },
            json!({"type":"invoke","invocationId":"2","target":"event","event":"noData"}),
        );
        round_trip(
            ClientMessage::CancelInvocation {
                invocation_id: "2".into(),
            },
            json!({"type":"cancelInvocation","invocationId":"2"}),
        );
    }

    #[test]
    fn encoding_allocates_once_for_text_and_bytes() {
        let text = "x".repeat(1000);
        for data in [
            Data::Text(text.clone()),
            Data::Binary(vec![7; 1000]),
            Data::from(""),
        ] {
            let msg = ClientMessage::SendToGroup {
                group: "g".repeat(1024),
                ack_id: Some(u64::MAX),
                no_echo: false,
                data: data.clone(),
            };
            let frame = msg.encode();
            assert!(frame.capacity() >= frame.len());
            assert!(msg.encoded_len_hint() >= frame.len(), "{}", frame.len());
            let msg = ClientMessage::Invoke {
                invocation_id: "i".repeat(30),
                event: "e".repeat(30),
                data: Some(data),
            };
            assert!(msg.encoded_len_hint() >= msg.encode().len());
        }
    }

    #[test]
    fn null_data_is_the_json_value_null_not_an_absent_payload() {
        // Found by tests/codec_fuzz.rs: `invoke` used to read `"data":null` as no data.
        round_trip(
            ClientMessage::Invoke {
                invocation_id: "3".into(),
                event: "e".into(),
                data: Some(Data::Json(serde_json::Value::Null)),
            },
            json!({"type":"invoke","invocationId":"3","target":"event","event":"e","dataType":"json","data":null}),
        );
        assert!(matches!(
            ClientMessage::decode(r#"{"type":"event","event":"e","dataType":"text","data":null}"#),
            Err(ProtocolError::InvalidField { field: "data", .. })
        ));
    }

    #[test]
    fn missing_data_type_means_json_as_the_service_reads_it() {
        let msg =
            ClientMessage::decode(r#"{"type":"sendToGroup","group":"g","data":{"a":1}}"#).unwrap();
        assert_eq!(
            msg,
            ClientMessage::SendToGroup {
                group: "g".into(),
                ack_id: None,
                no_echo: false,
                data: Data::Json(json!({"a":1}))
            }
        );
    }

    #[test]
    fn unknown_types_and_data_types_are_skippable_not_errors() {
        assert_eq!(
            ClientMessage::decode(r#"{"type":"teleport","ackId":"not a number"}"#).unwrap(),
            ClientMessage::Unknown {
                kind: "teleport".into()
            }
        );
        assert_eq!(
            ClientMessage::decode(r#"{"type":"event","event":"e","dataType":"xml","data":"<a/>"}"#)
                .unwrap(),
            ClientMessage::Unknown {
                kind: "event".into()
            }
        );
        assert!(matches!(
            ClientMessage::decode(r#"{"noType":1}"#).unwrap(),
            ClientMessage::Unknown { .. }
        ));
    }

    #[test]
    fn malformed_client_frames_are_typed_errors() {
        assert!(matches!(
            ClientMessage::decode(r#"{"type":"joinGroup""#),
            Err(ProtocolError::InvalidJson(_))
        ));
        assert_eq!(
            ClientMessage::decode(r#"{"type":"joinGroup"}"#),
            Err(ProtocolError::MissingField {
                message: "joinGroup",
                field: "group"
            })
        );
        assert!(matches!(
            ClientMessage::decode(r#"{"type":"joinGroup","group":"g","ackId":-1}"#),
            Err(ProtocolError::InvalidField { field: "ackId", .. })
        ));
        assert!(matches!(
            ClientMessage::decode(
                r#"{"type":"sendToGroup","group":"g","dataType":"binary","data":"!!"}"#
            ),
            Err(ProtocolError::InvalidField { field: "data", .. })
        ));
    }
}
