//! The protobuf codec against PROTOBUF.md's test vectors (from the JS client's unit tests),
//! and against malformed and unknown input.

use crate::any::ProtobufAny;
use crate::client_msg::ClientMessage;
use crate::data::Data;
use crate::error::ProtocolError;
use crate::metadata::Metadata;
use crate::service_msg::{AckError, ServiceMessage};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::json;

fn bytes(b64: &str) -> Vec<u8> {
    BASE64.decode(b64).unwrap()
}

/// Decodes the vector, compares with the expected message, and re-encodes byte for byte.
fn upstream_vector(b64: &str, expected: ClientMessage) {
    let wire = bytes(b64);
    assert_eq!(
        ClientMessage::decode_protobuf(&wire),
        Ok(expected.clone()),
        "{b64}"
    );
    assert_eq!(
        BASE64.encode(expected.encode_protobuf()),
        b64,
        "{expected:?}"
    );
}

fn downstream_vector(b64: &str, expected: ServiceMessage) {
    let wire = bytes(b64);
    assert_eq!(
        ServiceMessage::decode_protobuf(&wire),
        Ok(expected.clone()),
        "{b64}"
    );
    assert_eq!(
        BASE64.encode(expected.encode_protobuf()),
        b64,
        "{expected:?}"
    );
}

fn send(ack_id: Option<u64>, no_echo: bool, data: Data) -> ClientMessage {
    ClientMessage::SendToGroup {
        group: "group".into(),
        ack_id,
        no_echo,
        data,
        ttl_seconds: None,
        metadata: Metadata::new(),
    }
}

#[test]
fn upstream_test_vectors_decode_and_re_encode_byte_for_byte() {
    upstream_vector(
        "MgcKBWdyb3Vw",
        ClientMessage::JoinGroup {
            group: "group".into(),
            ack_id: None,
        },
    );
    upstream_vector(
        "MgsKBWdyb3VwEOXYAg==",
        ClientMessage::JoinGroup {
            group: "group".into(),
            ack_id: Some(44133),
        },
    );
    upstream_vector(
        "OgoKBWdyb3VwELlg",
        ClientMessage::LeaveGroup {
            group: "group".into(),
            ack_id: Some(12345),
        },
    );
    upstream_vector(
        "Cg4KBWdyb3VwGgUKA3h6eQ==",
        send(None, false, Data::from("xzy")),
    );
    upstream_vector(
        "Ch8KBWdyb3VwELlgGhEiD3sidmFsdWUiOiJ4enkifSAB",
        send(Some(12345), true, Data::Json(json!({"value": "xzy"}))),
    );
    upstream_vector(
        "ChMKBWdyb3VwELlgGgUSA3h5eiAB",
        send(Some(12345), true, Data::Binary(b"xyz".to_vec())),
    );
    upstream_vector(
        "Ch4KBWdyb3VwELlgGhAaDgoHZXhhbXBsZRIDeHl6IAE=",
        send(
            Some(12345),
            true,
            Data::from(ProtobufAny::new("example", b"xyz".to_vec())),
        ),
    );
    upstream_vector(
        "Kh0KBWV2ZW50EhEiD3sidmFsdWUiOiJ4enkifRi5YA==",
        ClientMessage::Event {
            event: "event".into(),
            ack_id: Some(12345),
            data: Data::Json(json!({"value": "xzy"})),
            metadata: Metadata::new(),
        },
    );
    upstream_vector(
        "QgQIwMQH",
        ClientMessage::SequenceAck {
            sequence_id: 123456,
        },
    );
}

#[test]
fn downstream_test_vectors_decode_and_re_encode_byte_for_byte() {
    downstream_vector(
        "CgQIexAB",
        ServiceMessage::Ack {
            ack_id: 123,
            success: true,
            error: None,
        },
    );
    downstream_vector(
        "ChoIexAAGhQKCUZvcmJpZGRlbhIHbWVzc2FnZQ==",
        ServiceMessage::Ack {
            ack_id: 123,
            success: false,
            error: Some(AckError::new("Forbidden", "message")),
        },
    );
    downstream_vector(
        "EhwKBWdyb3VwEglncm91cE5hbWUaBQoDeHl6ILlg",
        ServiceMessage::GroupMessage {
            group: "groupName".into(),
            data: Data::from("xyz"),
            from_user_id: None,
            sequence_id: Some(12345),
            metadata: Metadata::new(),
        },
    );
    downstream_vector(
        "EhIKBnNlcnZlchoFCgN4eXoguWA=",
        ServiceMessage::ServerMessage {
            data: Data::from("xyz"),
            sequence_id: Some(12345),
            metadata: Metadata::new(),
        },
    );
}

#[test]
fn the_any_of_a_protobuf_payload_is_embedded_without_re_encoding() {
    // An `Any` whose fields are out of order and which carries an unknown field: parsing and
    // re-encoding it would change its bytes; the codec must not.
    let any = b"\x12\x03xyz\x0a\x07example\x18\x01".to_vec();
    let msg = ServiceMessage::ServerMessage {
        data: Data::Protobuf(any.clone()),
        sequence_id: None,
        metadata: Metadata::new(),
    };
    let wire = msg.encode_protobuf();
    assert!(wire.windows(any.len()).any(|w| w == any.as_slice()));
    assert_eq!(ServiceMessage::decode_protobuf(&wire), Ok(msg.clone()));
    // The same bytes in JSON, as base64.
    let json = msg.encode();
    assert!(json.contains(&BASE64.encode(&any)), "{json}");
    assert_eq!(ServiceMessage::decode(&json), Ok(msg));
}

#[test]
fn ping_pong_and_the_system_messages_round_trip() {
    for msg in [
        ClientMessage::Ping,
        ClientMessage::CancelInvocation {
            invocation_id: "7".into(),
        },
        ClientMessage::Invoke {
            invocation_id: "1".into(),
            event: "echo".into(),
            data: None,
            metadata: Metadata::new(),
        },
        ClientMessage::Invoke {
            invocation_id: "2".into(),
            event: "echo".into(),
            data: Some(Data::Json(json!(null))),
            metadata: Metadata::from([("k", "v")]),
        },
        ClientMessage::SendToGroup {
            group: "g".into(),
            ack_id: Some(0),
            no_echo: false,
            data: Data::Text(String::new()),
            ttl_seconds: Some(0),
            metadata: Metadata::from([("a", ""), ("b", "2")]),
        },
    ] {
        assert_eq!(
            ClientMessage::decode_protobuf(&msg.encode_protobuf()),
            Ok(msg.clone())
        );
    }
    // Ping is case 9 with an empty message: what the JS codec cannot encode.
    assert_eq!(ClientMessage::Ping.encode_protobuf(), [0x4a, 0x00]);
    for msg in [
        ServiceMessage::Pong,
        ServiceMessage::Connected {
            connection_id: "c".into(),
            user_id: Some("u".into()),
            reconnection_token: Some("t".into()),
        },
        ServiceMessage::Connected {
            connection_id: "c".into(),
            user_id: None,
            reconnection_token: None,
        },
        ServiceMessage::Disconnected {
            message: Some("bye".into()),
        },
        ServiceMessage::Disconnected { message: None },
        ServiceMessage::InvokeResponse {
            invocation_id: "1".into(),
            success: false,
            data: None,
            error: Some(AckError::new(AckError::INVOCATION_FAILED, "boom")),
            metadata: Metadata::new(),
        },
        ServiceMessage::InvokeResponse {
            invocation_id: "2".into(),
            success: true,
            data: Some(Data::Binary(vec![0, 255])),
            error: None,
            metadata: Metadata::from([("k", "v")]),
        },
    ] {
        assert_eq!(
            ServiceMessage::decode_protobuf(&msg.encode_protobuf()),
            Ok(msg.clone())
        );
    }
    assert_eq!(ServiceMessage::Pong.encode_protobuf(), [0x22, 0x00]);
}

#[test]
fn metadata_and_ttl_have_their_field_numbers() {
    let msg = ClientMessage::SendToGroup {
        group: "g".into(),
        ack_id: None,
        no_echo: false,
        data: Data::from("x"),
        ttl_seconds: Some(60),
        metadata: Metadata::from([("k", "v")]),
    };
    // 1:{1:"g", 3:{1:"x"}, 5:60, 6:{1:"k",2:"v"}}
    assert_eq!(
        msg.encode_protobuf(),
        b"\x0a\x12\x0a\x01g\x1a\x03\x0a\x01x\x28\x3c\x32\x06\x0a\x01k\x12\x01v"
    );
    let ev = ClientMessage::Event {
        event: "e".into(),
        ack_id: None,
        data: Data::from("x"),
        metadata: Metadata::from([("k", "v")]),
    };
    // 5:{1:"e", 2:{1:"x"}, 4:{1:"k",2:"v"}}
    assert_eq!(
        ev.encode_protobuf(),
        b"\x2a\x10\x0a\x01e\x12\x03\x0a\x01x\x22\x06\x0a\x01k\x12\x01v"
    );
    let down = ServiceMessage::ServerMessage {
        data: Data::from("x"),
        sequence_id: None,
        metadata: Metadata::from([("k", "v")]),
    };
    // 2:{1:"server", 3:{1:"x"}, 5:{1:"k",2:"v"}}
    assert_eq!(
        down.encode_protobuf(),
        b"\x12\x15\x0a\x06server\x1a\x03\x0a\x01x\x2a\x06\x0a\x01k\x12\x01v"
    );
}

#[test]
fn a_repeated_map_key_keeps_its_last_value_and_entries_may_come_in_any_order() {
    // 2:{1:"server", 3:{1:"x"}, 5:{k=2}, 5:{a=1}, 5:{k=3}}
    let wire = b"\x12\x25\x0a\x06server\x1a\x03\x0a\x01x\x2a\x06\x0a\x01k\x12\x012\x2a\x06\x0a\x01a\x12\x011\x2a\x06\x0a\x01k\x12\x013";
    match ServiceMessage::decode_protobuf(wire) {
        Ok(ServiceMessage::ServerMessage { metadata, .. }) => {
            assert_eq!(metadata, Metadata::from([("a", "1"), ("k", "3")]))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn json_is_json_data_and_text_holding_json_stays_text() {
    // text_data = "{\"a\":1}" is text, as it says (.NET sends json so: receivers see text).
    let text = b"\x12\x16\x0a\x06server\x1a\x0c\x0a\x0a{\"a\": [1]}";
    assert!(matches!(
        ServiceMessage::decode_protobuf(text),
        Ok(ServiceMessage::ServerMessage { data: Data::Text(t), .. }) if t == "{\"a\": [1]}"
    ));
    let json = b"\x12\x16\x0a\x06server\x1a\x0c\x22\x0a{\"a\": [1]}";
    assert!(matches!(
        ServiceMessage::decode_protobuf(json),
        Ok(ServiceMessage::ServerMessage { data: Data::Json(v), .. }) if v == json!({"a": [1]})
    ));
    let not_json = b"\x12\x10\x0a\x06server\x1a\x06\x22\x04{\"a\"";
    assert!(matches!(
        ServiceMessage::decode_protobuf(not_json),
        Err(ProtocolError::InvalidField {
            field: "json_data",
            ..
        })
    ));
}

#[test]
fn sequence_ids_absent_or_zero_are_none() {
    let zero = b"\x12\x11\x0a\x06server\x1a\x05\x0a\x03xyz\x20\x00";
    assert_eq!(
        ServiceMessage::decode_protobuf(zero).unwrap().sequence_id(),
        None
    );
    let absent = b"\x12\x0f\x0a\x06server\x1a\x05\x0a\x03xyz";
    assert_eq!(
        ServiceMessage::decode_protobuf(absent)
            .unwrap()
            .sequence_id(),
        None
    );
}

#[test]
fn unknown_and_preview_cases_are_skipped_not_errors() {
    // Upstream 13–17 (preview streaming and group state), a future case, the empty frame.
    for (wire, kind) in [
        (&b"\x6a\x02\x0a\x00"[..], "stream_data_message"),
        (b"\x72\x00", "stream_end_message"),
        (b"\x7a\x00", "set_group_state_message"),
        (b"\x82\x01\x00", "subscribe_group_state_message"),
        (b"\x8a\x01\x00", "unsubscribe_group_state_message"),
        (b"\xa2\x06\x00", "unknown message case"),
        (b"", "unknown message case"),
        // A send that starts a stream (field 7), an event with an unknown data case (5).
        (
            b"\x0a\x0b\x0a\x01g\x1a\x02\x0a\x00\x3a\x02\x0a\x00",
            "send_to_group_message with stream",
        ),
        (
            b"\x2a\x07\x0a\x01e\x12\x02\x2a\x00",
            "event_message with unknown data case",
        ),
    ] {
        assert_eq!(
            ClientMessage::decode_protobuf(wire),
            Ok(ClientMessage::Unknown { kind: kind.into() }),
            "{wire:?}"
        );
    }
    // Downstream 6–10; group state keeps its sequence id; a new `from`; a new system case.
    for (wire, kind, seq) in [
        (&b"\x32\x00"[..], "stream_ack_message", None),
        (b"\x3a\x00", "stream_nack_message", None),
        (b"\x42\x00", "stream_closed_message", None),
        (b"\x4a\x02\x18\x05", "group_state_update_message", Some(5)),
        (b"\x52\x02\x18\x06", "group_state_snapshot_message", Some(6)),
        (
            b"\x12\x0a\x0a\x04peer\x1a\x00\x20\x07",
            "message from=peer",
            Some(7),
        ),
        (
            b"\x1a\x02\x1a\x00",
            "system_message with unknown case",
            None,
        ),
        (b"", "unknown message case", None),
    ] {
        assert_eq!(
            ServiceMessage::decode_protobuf(wire),
            Ok(ServiceMessage::Unknown {
                kind: kind.into(),
                sequence_id: seq
            }),
            "{wire:?}"
        );
    }
}

#[test]
fn malformed_frames_are_typed_errors_never_panics() {
    let invalid = [
        // Truncated: a group name announced as 5 bytes, 3 present.
        &b"\x32\x07\x0a\x05gro"[..],
        // An outer length past the end.
        b"\x32\x7f\x0a\x05group",
        // An oversized length (a 10-byte varint near u64::MAX).
        b"\x32\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        // A varint longer than ten bytes.
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        // Wrong wire type: join_group_message (6) as a varint.
        b"\x30\x01",
        // Field number 0, and wire types 6 and 7.
        b"\x02\x00",
        b"\x0e",
        b"\x0f",
        // An end-group without a start.
        b"\x0c",
    ];
    for wire in invalid {
        assert!(
            matches!(
                ClientMessage::decode_protobuf(wire),
                Err(ProtocolError::InvalidProtobuf(_))
            ),
            "{wire:?}: {:?}",
            ClientMessage::decode_protobuf(wire)
        );
        assert!(
            matches!(
                ServiceMessage::decode_protobuf(wire),
                Err(ProtocolError::InvalidProtobuf(_))
            ),
            "{wire:?}: {:?}",
            ServiceMessage::decode_protobuf(wire)
        );
    }
    // Upstream only (downstream case 6 is a preview message, skipped): a wrong wire type
    // inside (group as a varint), invalid UTF-8 in a string.
    for wire in [&b"\x32\x02\x08\x01"[..], b"\x32\x04\x0a\x02\xff\xfe"] {
        assert!(matches!(
            ClientMessage::decode_protobuf(wire),
            Err(ProtocolError::InvalidProtobuf(_))
        ));
    }
    // Invalid UTF-8 in a downstream group name and in text_data.
    for wire in [
        &b"\x12\x0d\x0a\x05group\x12\x02\xc3\x28\x1a\x00"[..],
        b"\x12\x0d\x0a\x06server\x1a\x03\x0a\x01\xff",
    ] {
        assert!(matches!(
            ServiceMessage::decode_protobuf(wire),
            Err(ProtocolError::InvalidProtobuf(_))
        ));
    }
    // Every prefix of valid frames is an error or a message, never a panic.
    let frames = [
        bytes("Ch4KBWdyb3VwELlgGhAaDgoHZXhhbXBsZRIDeHl6IAE="),
        bytes("EhwKBWdyb3VwEglncm91cE5hbWUaBQoDeHl6ILlg"),
    ];
    for f in &frames {
        for n in 0..f.len() {
            let _ = ClientMessage::decode_protobuf(&f[..n]);
            let _ = ServiceMessage::decode_protobuf(&f[..n]);
        }
    }
}

#[test]
fn messages_without_a_required_field_are_missing_field_errors() {
    // A send without data and without metadata; with metadata it is empty text.
    assert_eq!(
        ClientMessage::decode_protobuf(b"\x0a\x03\x0a\x01g"),
        Err(ProtocolError::MissingField {
            message: "sendToGroup",
            field: "data"
        })
    );
    assert_eq!(
        ClientMessage::decode_protobuf(b"\x0a\x0b\x0a\x01g\x32\x06\x0a\x01k\x12\x01v"),
        Ok(ClientMessage::SendToGroup {
            group: "g".into(),
            ack_id: None,
            no_echo: false,
            data: Data::Text(String::new()),
            ttl_seconds: None,
            metadata: Metadata::from([("k", "v")]),
        })
    );
    // A group message without its group.
    assert_eq!(
        ServiceMessage::decode_protobuf(b"\x12\x0c\x0a\x05group\x1a\x03\x0a\x01x"),
        Err(ProtocolError::MissingField {
            message: "message",
            field: "group"
        })
    );
}

#[test]
fn json_and_protobuf_decode_to_the_same_values() {
    // One logic for all four subprotocols: a message round-trips through either codec.
    let msg = ServiceMessage::GroupMessage {
        group: "g".into(),
        data: Data::Binary(vec![1, 2, 3]),
        from_user_id: None,
        sequence_id: Some(9),
        metadata: Metadata::from([("trace", "1")]),
    };
    assert_eq!(ServiceMessage::decode(&msg.encode()), Ok(msg.clone()));
    assert_eq!(
        ServiceMessage::decode_protobuf(&msg.encode_protobuf()),
        Ok(msg)
    );
}
