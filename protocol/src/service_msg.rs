//! Messages the service sends to a client (PROTOCOL.md §4).

use super::data::{push_json_str, push_u64, Data};
use super::raw::{opt_str, optional, required, RawFrame};
use super::ProtocolError;
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
        /// The publisher's user id, if it had one.
        from_user_id: Option<String>,
        /// Its sequence id (reliable protocol only).
        sequence_id: Option<u64>,
    },
    /// `message` from `server`: anything the application server sent through REST.
    ServerMessage {
        /// The payload.
        data: Data,
        /// Its sequence id (reliable protocol only).
        sequence_id: Option<u64>,
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
    },
    /// A message this version does not know (a new `type`, `event`, `from` or
    /// `dataType`); receivers skip it.
    Unknown {
        /// What was not understood, e.g. `type=foo` or `dataType=xml`.
        kind: String,
        /// Its sequence id, if it carried one: a receiver still counts it as received,
        /// so that the service does not keep resending it.
        sequence_id: Option<u64>,
    },
}

impl ServiceMessage {
    /// Decodes one text frame from the service.
    pub fn decode(text: &str) -> Result<ServiceMessage, ProtocolError> {
        // The one-pass decoder handles the common frames; it gives up on anything unusual,
        // and this decoder then decides (Unknown or ProtocolError).
        match super::fast::decode(text) {
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
                        let Some(data) = Data::decode("message", raw.data_type, raw.data)? else {
                            return Ok(skipped(data_type_name(&raw)));
                        };
                        ServiceMessage::GroupMessage {
                            group: required("message", "group", raw.group)?,
                            data,
                            from_user_id: optional("message", "fromUserId", raw.from_user_id)?,
                            sequence_id,
                        }
                    }
                    Some("server") => {
                        let Some(data) = Data::decode("message", raw.data_type, raw.data)? else {
                            return Ok(skipped(data_type_name(&raw)));
                        };
                        ServiceMessage::ServerMessage { data, sequence_id }
                    }
                    other => skipped(format!("message from={}", other.unwrap_or(""))),
                }
            }
            Some("pong") => ServiceMessage::Pong,
            Some("invokeResponse") => {
                let data = if raw.data.is_some() {
                    match Data::decode("invokeResponse", raw.data_type, raw.data)? {
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
                }
            }
            other => skipped(format!("type={}", other.unwrap_or(""))),
        })
    }

    /// Encodes the message as one JSON text frame (the service's side of the wire).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(96);
        self.encode_into(&mut out);
        out
    }

    /// Encodes the message, appending it to `out`.
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
            } => {
                push_sequence_start(out, *sequence_id);
                out.push_str("\"type\":\"message\",\"from\":\"group\",\"group\":");
                push_json_str(out, group);
                if let Some(user) = from_user_id {
                    out.push_str(",\"fromUserId\":");
                    push_json_str(out, user);
                }
                data.write_fields(out);
            }
            ServiceMessage::ServerMessage { data, sequence_id } => {
                push_sequence_start(out, *sequence_id);
                out.push_str("\"type\":\"message\",\"from\":\"server\"");
                data.write_fields(out);
            }
            ServiceMessage::Pong => out.push_str("{\"type\":\"pong\""),
            ServiceMessage::InvokeResponse {
                invocation_id,
                success,
                data,
                error,
            } => {
                out.push_str("{\"type\":\"invokeResponse\",\"invocationId\":");
                push_json_str(out, invocation_id);
                out.push_str(if *success {
                    ",\"success\":true"
                } else {
                    ",\"success\":false"
                });
                if let Some(data) = data {
                    data.write_fields(out);
                }
                push_error(out, error.as_ref());
            }
            ServiceMessage::Unknown { kind, sequence_id } => {
                push_sequence_start(out, *sequence_id);
                out.push_str("\"type\":");
                push_json_str(out, kind);
            }
        }
        out.push('}');
    }

    /// The message's sequence id, if it has one.
    pub fn sequence_id(&self) -> Option<u64> {
        match self {
            ServiceMessage::GroupMessage { sequence_id, .. }
            | ServiceMessage::ServerMessage { sequence_id, .. }
            | ServiceMessage::Unknown { sequence_id, .. } => *sequence_id,
            _ => None,
        }
    }
}

/// Writes `body` — an encoded message that has no `sequenceId` — with `"sequenceId":seq`
/// added as its first field, into `out`. The result equals the encoding of the same
/// message with that sequence id.
///
/// ```
/// use webpubsub_protocol::{splice_sequence_id, Data, ServiceMessage};
/// let msg = |sequence_id| ServiceMessage::ServerMessage { data: Data::from("x"), sequence_id };
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
                sequence_id: None
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
                sequence_id: Some(1)
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
            },
            json!({"sequenceId":u64::MAX,"type":"message","from":"group","group":"g","dataType":"text","data":"t"}),
        );
        round_trip(
            ServiceMessage::ServerMessage {
                data: Data::Protobuf(vec![1, 2, 3]),
                sequence_id: None,
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
            },
            json!({"type":"invokeResponse","invocationId":"1","success":true,"dataType":"json","data":[1,2]}),
        );
        round_trip(
            ServiceMessage::InvokeResponse {
                invocation_id: "2".into(),
                success: false,
                data: None,
                error: Some(AckError::new("InvocationFailed", "boom")),
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
                sequence_id: None
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
        };
        let mut out = String::new();
        splice_sequence_id(&msg(None).encode(), 12345, &mut out);
        assert_eq!(out, msg(Some(12345)).encode());
    }
}
