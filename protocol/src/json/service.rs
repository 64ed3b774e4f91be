//! The JSON codec of service messages (PROTOCOL.md §4, §11, §12).

use super::data::{
    data_len_hint, metadata_len_hint, read_data, read_metadata, read_required_data, write_data,
    write_metadata,
};
use super::fast;
use super::raw::{opt_str, optional, required, RawFrame};
use super::write::{push_json_str, push_u64};
use crate::error::ProtocolError;
use crate::service_msg::{AckError, ServiceMessage};

impl ServiceMessage {
    /// Decodes one JSON text frame from the service.
    pub fn decode(text: &str) -> Result<ServiceMessage, ProtocolError> {
        // The one-pass decoder handles the common frames; it gives up on anything unusual,
        // and this decoder then decides (Unknown or ProtocolError).
        match fast::decode(text) {
            Some(msg) => Ok(msg),
            None => Self::decode_two_pass(text),
        }
    }

    /// The reference decoder: every field kept raw first, then parsed per message kind.
    pub(crate) fn decode_two_pass(text: &str) -> Result<ServiceMessage, ProtocolError> {
        let raw = RawFrame::parse(text)?;
        let kind = raw.kind();
        // A message we skip may still carry a sequence id; a malformed one is ignored.
        let skipped = |what: String| ServiceMessage::Unknown {
            kind: what,
            sequence_id: raw
                .sequence_id
                .and_then(|r| serde_json::from_str(r.get()).ok()),
        };
        Ok(match kind.as_deref() {
            Some("system") => match raw.event.and_then(opt_str).as_deref() {
                Some("connected") => ServiceMessage::Connected {
                    connection_id: required("connected", "connectionId", raw.connection_id)?,
                    user_id: optional("connected", "userId", raw.user_id)?,
                    reconnection_token: optional(
                        "connected",
                        "reconnectionToken",
                        raw.reconnection_token,
                    )?,
                },
                Some("disconnected") => ServiceMessage::Disconnected {
                    message: optional("disconnected", "message", raw.message)?,
                },
                other => skipped(format!("system event={}", other.unwrap_or(""))),
            },
            Some("ack") => {
                let success: bool = required("ack", "success", raw.success)?;
                ServiceMessage::Ack {
                    ack_id: required("ack", "ackId", raw.ack_id)?,
                    success,
                    error: optional("ack", "error", raw.error)?,
                }
            }
            Some("message") => {
                let sequence_id = optional("message", "sequenceId", raw.sequence_id)?;
                let from = raw.from.and_then(opt_str);
                match from.as_deref() {
                    Some("group") => {
                        let Some(data) =
                            read_required_data("message", raw.data_type, raw.data, raw.metadata)?
                        else {
                            return Ok(skipped(data_type_name(&raw)));
                        };
                        ServiceMessage::GroupMessage {
                            group: required("message", "group", raw.group)?,
                            data,
                            from_user_id: optional("message", "fromUserId", raw.from_user_id)?,
                            sequence_id,
                            metadata: read_metadata("message", raw.metadata)?,
                        }
                    }
                    Some("server") => {
                        let Some(data) =
                            read_required_data("message", raw.data_type, raw.data, raw.metadata)?
                        else {
                            return Ok(skipped(data_type_name(&raw)));
                        };
                        ServiceMessage::ServerMessage {
                            data,
                            sequence_id,
                            metadata: read_metadata("message", raw.metadata)?,
                        }
                    }
                    other => skipped(format!("message from={}", other.unwrap_or(""))),
                }
            }
            Some("pong") => ServiceMessage::Pong,
            Some("invokeResponse") => {
                let data = if raw.data.is_some() {
                    match read_data("invokeResponse", raw.data_type, raw.data)? {
                        Some(d) => Some(d),
                        None => return Ok(skipped(data_type_name(&raw))),
                    }
                } else {
                    None
                };
                ServiceMessage::InvokeResponse {
                    invocation_id: required("invokeResponse", "invocationId", raw.invocation_id)?,
                    success: required("invokeResponse", "success", raw.success)?,
                    data,
                    error: optional("invokeResponse", "error", raw.error)?,
                    metadata: read_metadata("invokeResponse", raw.metadata)?,
                }
            }
            other => skipped(format!("type={}", other.unwrap_or(""))),
        })
    }

    /// Encodes the message as one JSON text frame (the service's side of the wire).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        out
    }

    /// An estimate of the encoded length, so that [`encode`](Self::encode) usually allocates
    /// once.
    fn encoded_len_hint(&self) -> usize {
        96 + match self {
            ServiceMessage::GroupMessage {
                group,
                data,
                from_user_id,
                metadata,
                ..
            } => {
                group.len()
                    + from_user_id.as_ref().map_or(0, String::len)
                    + data_len_hint(data)
                    + metadata_len_hint(metadata)
            }
            ServiceMessage::ServerMessage { data, metadata, .. } => {
                data_len_hint(data) + metadata_len_hint(metadata)
            }
            ServiceMessage::InvokeResponse { data, metadata, .. } => {
                data.as_ref().map_or(0, data_len_hint) + metadata_len_hint(metadata)
            }
            _ => 0,
        }
    }

    /// Encodes the message as JSON, appending it to `out`.
    ///
    /// A `sequenceId` is written first, so that a sender fanning one message out to
    /// many connections can encode it once without a sequence id and give each
    /// receiver its own with [`splice_sequence_id`].
    pub fn encode_into(&self, out: &mut String) {
        match self {
            ServiceMessage::Connected {
                connection_id,
                user_id,
                reconnection_token,
            } => {
                out.push_str("{\"type\":\"system\",\"event\":\"connected\",\"connectionId\":");
                push_json_str(out, connection_id);
                if let Some(user) = user_id {
                    out.push_str(",\"userId\":");
                    push_json_str(out, user);
                }
                if let Some(token) = reconnection_token {
                    out.push_str(",\"reconnectionToken\":");
                    push_json_str(out, token);
                }
            }
            ServiceMessage::Disconnected { message } => {
                out.push_str("{\"type\":\"system\",\"event\":\"disconnected\"");
                if let Some(message) = message {
                    out.push_str(",\"message\":");
                    push_json_str(out, message);
                }
            }
            ServiceMessage::Ack {
                ack_id,
                success,
                error,
            } => {
                out.push_str("{\"type\":\"ack\",\"ackId\":");
                push_u64(out, *ack_id);
                out.push_str(if *success {
                    ",\"success\":true"
                } else {
                    ",\"success\":false"
                });
                push_error(out, error.as_ref());
            }
            ServiceMessage::GroupMessage {
                group,
                data,
                from_user_id,
                sequence_id,
                metadata,
            } => {
                push_sequence_start(out, *sequence_id);
                out.push_str("\"type\":\"message\",\"from\":\"group\",\"group\":");
                push_json_str(out, group);
                if let Some(user) = from_user_id {
                    out.push_str(",\"fromUserId\":");
                    push_json_str(out, user);
                }
                write_data(out, data);
                write_metadata(out, metadata);
            }
            ServiceMessage::ServerMessage {
                data,
                sequence_id,
                metadata,
            } => {
                push_sequence_start(out, *sequence_id);
                out.push_str("\"type\":\"message\",\"from\":\"server\"");
                write_data(out, data);
                write_metadata(out, metadata);
            }
            ServiceMessage::Pong => out.push_str("{\"type\":\"pong\""),
            ServiceMessage::InvokeResponse {
                invocation_id,
                success,
                data,
                error,
                metadata,
            } => {
                out.push_str("{\"type\":\"invokeResponse\",\"invocationId\":");
                push_json_str(out, invocation_id);
                out.push_str(if *success {
                    ",\"success\":true"
                } else {
                    ",\"success\":false"
                });
                if let Some(data) = data {
                    write_data(out, data);
                }
                push_error(out, error.as_ref());
                write_metadata(out, metadata);
            }
            ServiceMessage::Unknown { kind, sequence_id } => {
                push_sequence_start(out, *sequence_id);
                out.push_str("\"type\":");
                push_json_str(out, kind);
            }
        }
        out.push('}');
    }
}

/// Writes `body` — an encoded message that has no `sequenceId` — with `"sequenceId":seq`
/// added as its first field, into `out`. The result equals the encoding of the same
/// message with that sequence id.
///
/// ```
/// use webpubsub_protocol::{splice_sequence_id, Data, Metadata, ServiceMessage};
/// let msg = |sequence_id| ServiceMessage::ServerMessage {
///     data: Data::from("x"),
///     sequence_id,
///     metadata: Metadata::new(),
/// };
/// let mut out = String::new();
/// splice_sequence_id(&msg(None).encode(), 7, &mut out);
/// assert_eq!(out, msg(Some(7)).encode());
/// ```
pub fn splice_sequence_id(body: &str, seq: u64, out: &mut String) {
    debug_assert!(body.starts_with('{'));
    out.reserve(body.len() + 34);
    out.push_str("{\"sequenceId\":");
    push_u64(out, seq);
    out.push(',');
    out.push_str(&body[1..]);
}

fn push_sequence_start(out: &mut String, sequence_id: Option<u64>) {
    match sequence_id {
        Some(seq) => {
            out.push_str("{\"sequenceId\":");
            push_u64(out, seq);
            out.push(',');
        }
        None => out.push('{'),
    }
}

fn push_error(out: &mut String, error: Option<&AckError>) {
    if let Some(e) = error {
        out.push_str(",\"error\":{\"name\":");
        push_json_str(out, &e.name);
        out.push_str(",\"message\":");
        push_json_str(out, &e.message);
        out.push('}');
    }
}

fn data_type_name(raw: &RawFrame<'_>) -> String {
    let name = raw.data_type.and_then(opt_str);
    format!("dataType={}", name.as_deref().unwrap_or("?"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Data;
    use crate::metadata::Metadata;
    use serde_json::json;

    fn round_trip(msg: ServiceMessage, wire: serde_json::Value) {
        let text = msg.encode();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, wire, "encoding of {msg:?}");
        assert_eq!(
            ServiceMessage::decode(&text).unwrap(),
            msg,
            "decoding {text}"
        );
    }

    #[test]
    fn system_messages_round_trip() {
        round_trip(
            ServiceMessage::Connected {
                connection_id: "conn1".into(),
                user_id: Some("user1".into()),
                reconnection_token: Some("tok".into()),
            },
            json!({"type":"system","event":"connected","connectionId":"conn1","userId":"user1","reconnectionToken":"tok"}),
        );
        round_trip(
            ServiceMessage::Connected {
                connection_id: "c".into(),
                user_id: None,
                reconnection_token: None,
            },
            json!({"type":"system","event":"connected","connectionId":"c"}),
        );
        round_trip(
            ServiceMessage::Disconnected {
                message: Some("reason".into()),
            },
            json!({"type":"system","event":"disconnected","message":"reason"}),
        );
    }

    #[test]
    fn acks_round_trip_with_and_without_error() {
        round_trip(
            ServiceMessage::Ack {
                ack_id: 1,
                success: true,
                error: None,
            },
            json!({"type":"ack","ackId":1,"success":true}),
        );
        round_trip(
            ServiceMessage::Ack {
                ack_id: 2,
                success: false,
                error: Some(AckError::new("Forbidden", "nope")),
            },
            json!({"type":"ack","ackId":2,"success":false,"error":{"name":"Forbidden","message":"nope"}}),
        );
    }

    #[test]
    fn service_docs_examples_decode() {
        // The examples of the service's subprotocol documentation.
        let m = ServiceMessage::decode(
            r#"{"type": "message", "from": "group", "fromUserId": "abc", "group": "<group_name>", "dataType": "json", "data" : {"hello": "world"}}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ServiceMessage::GroupMessage {
                group: "<group_name>".into(),
                data: Data::Json(json!({"hello":"world"})),
                from_user_id: Some("abc".into()),
                sequence_id: None,
                metadata: Metadata::new(),
            }
        );
        let m = ServiceMessage::decode(
            r#"{"sequenceId": 1, "type": "message", "from": "server", "dataType": "binary", "data": "aGVsbG8gd29ybGQ="}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ServiceMessage::ServerMessage {
                data: Data::Binary(b"hello world".to_vec()),
                sequence_id: Some(1),
                metadata: Metadata::new(),
            }
        );
        let m = ServiceMessage::decode(
            r#"{"type": "ack", "ackId": 1, "success": false, "error": {"name": "Duplicate", "message": "Message with ack-id: 1 has been processed"}}"#,
        )
        .unwrap();
        assert!(matches!(m, ServiceMessage::Ack { error: Some(ref e), .. } if e.is_duplicate()));
    }

    #[test]
    fn messages_round_trip_with_sequence_ids() {
        round_trip(
            ServiceMessage::GroupMessage {
                group: "g".into(),
                data: Data::Text("t".into()),
                from_user_id: None,
                sequence_id: Some(u64::MAX),
                metadata: Metadata::new(),
            },
            json!({"sequenceId":u64::MAX,"type":"message","from":"group","group":"g","dataType":"text","data":"t"}),
        );
        round_trip(
            ServiceMessage::ServerMessage {
                data: Data::Protobuf(vec![1, 2, 3]),
                sequence_id: None,
                metadata: Metadata::new(),
            },
            json!({"type":"message","from":"server","dataType":"protobuf","data":"AQID"}),
        );
        round_trip(ServiceMessage::Pong, json!({"type":"pong"}));
    }

    #[test]
    fn invoke_responses_round_trip() {
        round_trip(
            ServiceMessage::InvokeResponse {
                invocation_id: "1".into(),
                success: true,
                data: Some(Data::Json(json!([1, 2]))),
                error: None,
                metadata: Metadata::new(),
            },
            json!({"type":"invokeResponse","invocationId":"1","success":true,"dataType":"json","data":[1,2]}),
        );
        round_trip(
            ServiceMessage::InvokeResponse {
                invocation_id: "2".into(),
                success: false,
                data: None,
                error: Some(AckError::new("InvocationFailed", "boom")),
                metadata: Metadata::new(),
            },
            json!({"type":"invokeResponse","invocationId":"2","success":false,"error":{"name":"InvocationFailed","message":"boom"}}),
        );
        // Found by tests/codec_fuzz.rs: `"data":null` used to read as no data.
        round_trip(
            ServiceMessage::InvokeResponse {
                invocation_id: "3".into(),
                success: true,
                data: Some(Data::Json(serde_json::Value::Null)),
                error: None,
                metadata: Metadata::new(),
            },
            json!({"type":"invokeResponse","invocationId":"3","success":true,"dataType":"json","data":null}),
        );
    }

    #[test]
    fn data_type_is_case_insensitive_on_input() {
        let m = ServiceMessage::decode(
            r#"{"type":"message","from":"server","dataType":"Text","data":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ServiceMessage::ServerMessage {
                data: Data::Text("x".into()),
                sequence_id: None,
                metadata: Metadata::new(),
            }
        );
    }

    #[test]
    fn unknown_kinds_are_skipped_but_keep_their_sequence_id() {
        let cases = [
            (r#"{"type":"newThing","sequenceId":"x"}"#, None),
            (r#"{"type":"system","event":"rebalancing"}"#, None),
            (
                r#"{"type":"message","from":"peer","sequenceId":9,"dataType":"text","data":"x"}"#,
                Some(9),
            ),
            (
                r#"{"type":"message","from":"server","sequenceId":10,"dataType":"xml","data":"<a/>"}"#,
                Some(10),
            ),
            (r#"{"type":7}"#, None),
            (r#"{}"#, None),
        ];
        for (text, seq) in cases {
            match ServiceMessage::decode(text) {
                Ok(ServiceMessage::Unknown { sequence_id, .. }) => {
                    assert_eq!(sequence_id, seq, "{text}")
                }
                other => panic!("{text} decoded to {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        let invalid_json = [
            r#"{"type":"ack","ackId":1"#,
            "",
            "[1,2]",
            "\"text\"",
            "nul",
            r#"{"type":"ack","type":"ack"}"#,
        ];
        for text in invalid_json {
            assert!(
                matches!(
                    ServiceMessage::decode(text),
                    Err(ProtocolError::InvalidJson(_))
                ),
                "{text}"
            );
        }
        let cases: [(&str, &str); 9] = [
            (r#"{"type":"ack","success":true}"#, "ackId"),
            (r#"{"type":"ack","ackId":"1","success":true}"#, "ackId"),
            (
                r#"{"type":"ack","ackId":18446744073709551616,"success":true}"#,
                "ackId",
            ),
            (r#"{"type":"ack","ackId":1.5,"success":true}"#, "ackId"),
            (r#"{"type":"ack","ackId":1,"success":"yes"}"#, "success"),
            (r#"{"type":"system","event":"connected"}"#, "connectionId"),
            (
                r#"{"type":"message","from":"group","dataType":"text","data":"x"}"#,
                "group",
            ),
            (
                r#"{"type":"message","from":"server","dataType":"binary","data":"***"}"#,
                "data",
            ),
            (
                r#"{"type":"message","from":"server","dataType":"text","data":5}"#,
                "data",
            ),
        ];
        for (text, field) in cases {
            match ServiceMessage::decode(text) {
                Err(ProtocolError::MissingField { field: f, .. })
                | Err(ProtocolError::InvalidField { field: f, .. }) => {
                    assert_eq!(f, field, "{text}")
                }
                other => panic!("{text} decoded to {other:?}"),
            }
        }
    }

    #[test]
    fn ids_above_two_to_the_53_are_exact() {
        let big = (1u64 << 53) + 1;
        let text = format!(r#"{{"type":"ack","ackId":{big},"success":true}}"#);
        assert!(matches!(
            ServiceMessage::decode(&text).unwrap(),
            ServiceMessage::Ack { ack_id, .. } if ack_id == big
        ));
    }

    #[test]
    fn splice_matches_direct_encoding() {
        let msg = |sequence_id| ServiceMessage::GroupMessage {
            group: "g".into(),
            data: Data::Json(json!({"k": [1, "two"]})),
            from_user_id: Some("u".into()),
            sequence_id,
            metadata: Metadata::new(),
        };
        let mut out = String::new();
        splice_sequence_id(&msg(None).encode(), 12345, &mut out);
        assert_eq!(out, msg(Some(12345)).encode());
    }

    #[test]
    fn metadata_round_trips_on_every_kind_that_carries_it() {
        let metadata = Metadata::from([("k", "v"), ("origin", "rest")]);
        round_trip(
            ServiceMessage::GroupMessage {
                group: "g".into(),
                data: Data::Text("t".into()),
                from_user_id: Some("u".into()),
                sequence_id: Some(3),
                metadata: metadata.clone(),
            },
            json!({"sequenceId":3,"type":"message","from":"group","group":"g","fromUserId":"u",
                   "dataType":"text","data":"t","metadata":{"k":"v","origin":"rest"}}),
        );
        round_trip(
            ServiceMessage::ServerMessage {
                data: Data::Json(json!({"a": 1})),
                sequence_id: None,
                metadata: metadata.clone(),
            },
            json!({"type":"message","from":"server","dataType":"json","data":{"a":1},
                   "metadata":{"k":"v","origin":"rest"}}),
        );
        round_trip(
            ServiceMessage::InvokeResponse {
                invocation_id: "1".into(),
                success: true,
                data: None,
                error: None,
                metadata,
            },
            json!({"type":"invokeResponse","invocationId":"1","success":true,
                   "metadata":{"k":"v","origin":"rest"}}),
        );
    }

    #[test]
    fn a_frame_with_metadata_takes_the_two_pass_decoder_and_decodes_the_same() {
        let text = r#"{"type":"message","from":"server","dataType":"text","data":"x","metadata":{"b":"2","a":"1"}}"#;
        assert!(fast::decode(text).is_none());
        assert_eq!(
            ServiceMessage::decode(text),
            Ok(ServiceMessage::ServerMessage {
                data: Data::from("x"),
                sequence_id: None,
                metadata: Metadata::from([("a", "1"), ("b", "2")]),
            })
        );
        assert!(matches!(
            ServiceMessage::decode(
                r#"{"type":"message","from":"server","dataType":"text","data":"x","metadata":{"a":true}}"#
            ),
            Err(ProtocolError::InvalidField {
                field: "metadata",
                ..
            })
        ));
    }

    // The one-pass decoder of fast.rs against this module's two-pass decoder.

    // The tests' one generator: seeded, so every run replays the same frames.
    use webpubsub_testkit::rng::Rng;

    const KEYS: [&str; 24] = [
        "type",
        "event",
        "from",
        "group",
        "ackId",
        "success",
        "error",
        "dataType",
        "data",
        "fromUserId",
        "sequenceId",
        "connectionId",
        "userId",
        "reconnectionToken",
        "message",
        "noEcho",
        "invocationId",
        "target",
        "ttlSeconds",
        "metadata",
        "other",
        "Type",
        // An escaped key is the same key.
        "typ\\u0065",
        "d\\u0061ta",
    ];

    const VALUES: [&str; 42] = [
        "null",
        "true",
        "false",
        "0",
        "1",
        "-1",
        "1.5",
        "1e2",
        "9007199254740993",
        "18446744073709551615",
        "18446744073709551616",
        "\"\"",
        "\"x\"",
        "\"group\"",
        "\"server\"",
        "\"peer\"",
        "\"message\"",
        "\"ack\"",
        "\"pong\"",
        "\"system\"",
        "\"text\"",
        "\"Text\"",
        "\"json\"",
        "\"binary\"",
        "\"protobuf\"",
        "\"xml\"",
        "\"aGk=\"",
        "\"**\"",
        "\"a\\\"b\\\\c\"",
        "\"\\u00e9\\n\\t\"",
        "\"\\ud800\"",
        "\"é€😀\"",
        "\"gr\\u006fup\"",
        "{}",
        "[]",
        "{\"name\":\"Forbidden\",\"message\":\"m\"}",
        "{\"name\":\"Duplicate\"}",
        "{\"name\":1}",
        "[1,{\"a\":null}]",
        "{\"a\":{\"b\":[1,2,\"x\"]}}",
        "{\"k\":\"v\",\"a\":\"\"}",
        "{\"k\":\"v\",\"k\":\"w\"}",
    ];

    fn bases() -> Vec<Vec<(&'static str, &'static str)>> {
        vec![
            vec![
                ("sequenceId", "5"),
                ("type", "\"message\""),
                ("from", "\"group\""),
                ("group", "\"g\""),
                ("fromUserId", "\"u\""),
                ("dataType", "\"text\""),
                ("data", "\"hello\""),
            ],
            vec![
                ("type", "\"message\""),
                ("from", "\"server\""),
                ("dataType", "\"json\""),
                ("data", "{\"a\":[1,2.5,\"x\"]}"),
            ],
            vec![
                ("type", "\"message\""),
                ("from", "\"server\""),
                ("dataType", "\"binary\""),
                ("data", "\"aGk=\""),
            ],
            vec![("type", "\"ack\""), ("ackId", "1"), ("success", "true")],
            vec![
                ("type", "\"ack\""),
                ("ackId", "2"),
                ("success", "false"),
                ("error", "{\"name\":\"Forbidden\",\"message\":\"no\"}"),
            ],
            vec![("type", "\"pong\"")],
            vec![
                ("type", "\"system\""),
                ("event", "\"connected\""),
                ("connectionId", "\"c\""),
            ],
        ]
    }

    fn frame(rng: &mut Rng) -> String {
        let bases = bases();
        let mut fields = bases[rng.below(bases.len())].clone();
        for _ in 0..rng.below(4) {
            let i = rng.below(fields.len().max(1));
            match rng.below(6) {
                0 if !fields.is_empty() => fields[i].1 = rng.pick(&VALUES),
                1 if !fields.is_empty() => {
                    fields.remove(i);
                }
                2 if !fields.is_empty() => {
                    let f = fields[i];
                    fields.push(f);
                }
                3 => fields.insert(i.min(fields.len()), (rng.pick(&KEYS), rng.pick(&VALUES))),
                4 if fields.len() > 1 => {
                    let j = rng.below(fields.len());
                    fields.swap(i, j);
                }
                _ => {}
            }
        }
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        let mut text = format!("{{{}}}", body.join(","));
        match rng.below(40) {
            0 => {
                text = format!(
                    "[{}]",
                    fields.iter().map(|f| f.1).collect::<Vec<_>>().join(",")
                )
            }
            1 => {
                let mut cut = rng.below(text.len());
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            2 => text.push_str(" x"),
            3 => text = format!(" {text} "),
            _ => {}
        }
        text
    }

    #[test]
    fn answers_equal_the_two_pass_decoder_or_none() {
        let mut rng = Rng::new(0x5eed_1234_abcd_0001);
        let (mut answered, mut flat) = (0, 0);
        const FRAMES: usize = 60_000;
        for _ in 0..FRAMES {
            let text = frame(&mut rng);
            if let Some(msg) = fast::decode_flat(&text) {
                flat += 1;
                assert_eq!(
                    ServiceMessage::decode_two_pass(&text),
                    Ok(msg),
                    "hand-read and two-pass decoders disagree on {text}"
                );
            }
            if let Some(fast) = fast::decode(&text) {
                answered += 1;
                assert_eq!(
                    ServiceMessage::decode_two_pass(&text),
                    Ok(fast),
                    "one-pass and two-pass decoders disagree on {text}"
                );
            }
        }
        // The mutations leave many frames valid: the fast path must have answered those.
        assert!(
            answered > FRAMES / 5,
            "one-pass decoder answered only {answered}"
        );
        assert!(flat > FRAMES / 10, "hand-read path answered only {flat}");
    }
}
