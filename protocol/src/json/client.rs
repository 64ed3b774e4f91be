//! The JSON codec of client messages (PROTOCOL.md §3, §11, §12).

use super::data::{
    data_len_hint, metadata_len_hint, read_data, read_metadata, read_required_data, write_data,
    write_metadata,
};
use super::raw::{opt_str, optional, required, RawFrame};
use super::write::{push_json_str, push_u64};
use crate::client_msg::ClientMessage;
use crate::error::ProtocolError;

impl ClientMessage {
    /// Encodes the message as one JSON text frame. Optional fields without a value (an ack
    /// id, a TTL, empty metadata) are omitted, never sent as `null`.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        out
    }

    /// An upper estimate of the encoded length (exact unless strings need escaping or the
    /// payload is JSON), so that [`encode`](Self::encode) allocates once.
    pub(crate) fn encoded_len_hint(&self) -> usize {
        // The longest fixed text: type, field names, a 20-digit ack id, a TTL.
        const FIXED: usize = 120;
        FIXED
            + match self {
                ClientMessage::JoinGroup { group, .. }
                | ClientMessage::LeaveGroup { group, .. } => group.len(),
                ClientMessage::SendToGroup {
                    group,
                    data,
                    metadata,
                    ..
                } => group.len() + data_len_hint(data) + metadata_len_hint(metadata),
                ClientMessage::Event {
                    event,
                    data,
                    metadata,
                    ..
                } => event.len() + data_len_hint(data) + metadata_len_hint(metadata),
                ClientMessage::Invoke {
                    invocation_id,
                    event,
                    data,
                    metadata,
                } => {
                    invocation_id.len()
                        + event.len()
                        + data.as_ref().map_or(0, data_len_hint)
                        + metadata_len_hint(metadata)
                }
                ClientMessage::CancelInvocation { invocation_id } => invocation_id.len(),
                ClientMessage::Unknown { kind } => kind.len(),
                ClientMessage::SequenceAck { .. } | ClientMessage::Ping => 0,
            }
    }

    /// Encodes the message as JSON, appending it to `out` (lets a writer reuse one buffer).
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
                ttl_seconds,
                metadata,
            } => {
                out.push_str("{\"type\":\"sendToGroup\",\"group\":");
                push_json_str(out, group);
                push_ack_id(out, *ack_id);
                out.push_str(if *no_echo {
                    ",\"noEcho\":true"
                } else {
                    ",\"noEcho\":false"
                });
                if let Some(ttl) = ttl_seconds {
                    out.push_str(",\"ttlSeconds\":");
                    push_u64(out, u64::from(*ttl));
                }
                write_data(out, data);
                write_metadata(out, metadata);
            }
            ClientMessage::Event {
                event,
                ack_id,
                data,
                metadata,
            } => {
                out.push_str("{\"type\":\"event\",\"event\":");
                push_json_str(out, event);
                push_ack_id(out, *ack_id);
                write_data(out, data);
                write_metadata(out, metadata);
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
                metadata,
            } => {
                out.push_str("{\"type\":\"invoke\",\"invocationId\":");
                push_json_str(out, invocation_id);
                out.push_str(",\"target\":\"event\",\"event\":");
                push_json_str(out, event);
                if let Some(data) = data {
                    write_data(out, data);
                }
                write_metadata(out, metadata);
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

    /// Decodes a JSON frame a client sent (the service's side of the wire).
    ///
    /// An unknown `type` or `dataType` gives [`ClientMessage::Unknown`]; a missing
    /// `dataType` means json, as the service reads it. The service's rules are not applied
    /// here: call [`check`](Self::check) on the result.
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
                let Some(data) =
                    read_required_data("sendToGroup", raw.data_type, raw.data, raw.metadata)?
                else {
                    return Ok(unknown());
                };
                ClientMessage::SendToGroup {
                    group: required("sendToGroup", "group", raw.group)?,
                    ack_id: optional("sendToGroup", "ackId", raw.ack_id)?,
                    no_echo: optional("sendToGroup", "noEcho", raw.no_echo)?.unwrap_or(false),
                    data,
                    ttl_seconds: optional("sendToGroup", "ttlSeconds", raw.ttl_seconds)?,
                    metadata: read_metadata("sendToGroup", raw.metadata)?,
                }
            }
            Some("event") => {
                let Some(data) =
                    read_required_data("event", raw.data_type, raw.data, raw.metadata)?
                else {
                    return Ok(unknown());
                };
                ClientMessage::Event {
                    event: required("event", "event", raw.event)?,
                    ack_id: optional("event", "ackId", raw.ack_id)?,
                    data,
                    metadata: read_metadata("event", raw.metadata)?,
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
                    match read_data("invoke", raw.data_type, raw.data)? {
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
                    metadata: read_metadata("invoke", raw.metadata)?,
                }
            }
            Some("cancelInvocation") => ClientMessage::CancelInvocation {
                invocation_id: required("cancelInvocation", "invocationId", raw.invocation_id)?,
            },
            _ => unknown(),
        })
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
    use crate::data::Data;
    use crate::metadata::Metadata;
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
                ttl_seconds: None,
                metadata: Metadata::new(),
            },
            json!({"type":"sendToGroup","group":"g","ackId":u64::MAX,"noEcho":true,"dataType":"text","data":"text data"}),
        );
        round_trip(
            ClientMessage::SendToGroup {
                group: "g".into(),
                ack_id: None,
                no_echo: false,
                data: Data::Json(json!({"hello":"world"})),
                ttl_seconds: None,
                metadata: Metadata::new(),
            },
            json!({"type":"sendToGroup","group":"g","noEcho":false,"dataType":"json","data":{"hello":"world"}}),
        );
        round_trip(
            ClientMessage::SendToGroup {
                group: "g".into(),
                ack_id: Some(2),
                no_echo: false,
                data: Data::Binary(b"\x00\xffbin".to_vec()),
                ttl_seconds: None,
                metadata: Metadata::new(),
            },
            json!({"type":"sendToGroup","group":"g","ackId":2,"noEcho":false,"dataType":"binary","data":"AP9iaW4="}),
        );
        round_trip(
            ClientMessage::SendToGroup {
                group: "g".into(),
                ack_id: Some(3),
                no_echo: false,
                data: Data::Protobuf(vec![8, 1]),
                ttl_seconds: None,
                metadata: Metadata::new(),
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
                metadata: Metadata::new(),
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
                metadata: Metadata::new(),
            },
            json!({"type":"invoke","invocationId":"1","target":"event","event":"echo","dataType":"text","data":"hi"}),
        );
        round_trip(
            ClientMessage::Invoke {
                invocation_id: "2".into(),
                event: "noData".into(),
                data: None,
                metadata: Metadata::new(),
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
                ttl_seconds: None,
                metadata: Metadata::new(),
            };
            let frame = msg.encode();
            assert!(frame.capacity() >= frame.len());
            assert!(msg.encoded_len_hint() >= frame.len(), "{}", frame.len());
            let msg = ClientMessage::SendToGroup {
                group: "g".into(),
                ack_id: Some(u64::MAX),
                no_echo: true,
                data: data.clone(),
                ttl_seconds: Some(u32::MAX),
                metadata: Metadata::from([("k", "v"), ("key", "x".repeat(100).as_str())]),
            };
            assert!(msg.encoded_len_hint() >= msg.encode().len());
            let msg = ClientMessage::Invoke {
                invocation_id: "i".repeat(30),
                event: "e".repeat(30),
                data: Some(data),
                metadata: Metadata::new(),
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
                metadata: Metadata::new(),
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
                data: Data::Json(json!({"a":1})),
                ttl_seconds: None,
                metadata: Metadata::new(),
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

    #[test]
    fn metadata_and_ttl_round_trip_under_their_json_names() {
        round_trip(
            ClientMessage::SendToGroup {
                group: "g".into(),
                ack_id: Some(1),
                no_echo: false,
                data: Data::Text("x".into()),
                ttl_seconds: Some(300),
                metadata: Metadata::from([("trace-id", "t1"), ("a", "\"q\"")]),
            },
            json!({"type":"sendToGroup","group":"g","ackId":1,"noEcho":false,"ttlSeconds":300,
                   "dataType":"text","data":"x","metadata":{"a":"\"q\"","trace-id":"t1"}}),
        );
        round_trip(
            ClientMessage::Event {
                event: "e".into(),
                ack_id: None,
                data: Data::Binary(vec![1]),
                metadata: Metadata::from([("k", "v")]),
            },
            json!({"type":"event","event":"e","dataType":"binary","data":"AQ==","metadata":{"k":"v"}}),
        );
        round_trip(
            ClientMessage::Invoke {
                invocation_id: "1".into(),
                event: "e".into(),
                data: None,
                metadata: Metadata::from([("k", "v")]),
            },
            json!({"type":"invoke","invocationId":"1","target":"event","event":"e","metadata":{"k":"v"}}),
        );
        // The exact text: metadata after the payload, keys in order.
        let text = ClientMessage::SendToGroup {
            group: "g".into(),
            ack_id: None,
            no_echo: true,
            data: Data::from("x"),
            ttl_seconds: Some(0),
            metadata: Metadata::from([("b", "2"), ("a", "1")]),
        }
        .encode();
        assert_eq!(
            text,
            r#"{"type":"sendToGroup","group":"g","noEcho":true,"ttlSeconds":0,"dataType":"text","data":"x","metadata":{"a":"1","b":"2"}}"#
        );
    }

    #[test]
    fn null_or_absent_metadata_and_ttl_are_none() {
        let msg = ClientMessage::decode(
            r#"{"type":"sendToGroup","group":"g","dataType":"text","data":"x","metadata":null,"ttlSeconds":null}"#,
        )
        .unwrap();
        assert_eq!(msg.metadata(), &Metadata::new());
        assert!(matches!(
            msg,
            ClientMessage::SendToGroup {
                ttl_seconds: None,
                ..
            }
        ));
    }

    #[test]
    fn metadata_alone_is_a_message_of_empty_text() {
        // As Microsoft's emulator reads it: a publisher may send metadata without data.
        assert_eq!(
            ClientMessage::decode(r#"{"type":"event","event":"e","metadata":{"k":"v"}}"#),
            Ok(ClientMessage::Event {
                event: "e".into(),
                ack_id: None,
                data: Data::Text(String::new()),
                metadata: Metadata::from([("k", "v")]),
            })
        );
    }

    #[test]
    fn malformed_metadata_and_ttl_are_invalid_fields() {
        for (text, field) in [
            (
                r#"{"type":"sendToGroup","group":"g","data":1,"metadata":{"k":1}}"#,
                "metadata",
            ),
            (
                r#"{"type":"sendToGroup","group":"g","data":1,"metadata":["k"]}"#,
                "metadata",
            ),
            (
                r#"{"type":"event","event":"e","data":1,"metadata":{"k":"1","k":"2"}}"#,
                "metadata",
            ),
            (
                r#"{"type":"sendToGroup","group":"g","data":1,"ttlSeconds":-1}"#,
                "ttlSeconds",
            ),
            (
                r#"{"type":"sendToGroup","group":"g","data":1,"ttlSeconds":4294967296}"#,
                "ttlSeconds",
            ),
            (
                r#"{"type":"sendToGroup","group":"g","data":1,"ttlSeconds":"60"}"#,
                "ttlSeconds",
            ),
        ] {
            match ClientMessage::decode(text) {
                Err(ProtocolError::InvalidField { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text} decoded to {other:?}"),
            }
        }
        // The rules are not the codec's: an over-long TTL decodes, and `check` refuses it.
        let msg = ClientMessage::decode(
            r#"{"type":"sendToGroup","group":"g","data":1,"ttlSeconds":301}"#,
        )
        .unwrap();
        assert!(msg.check().is_err());
    }
}
