//! Adding a sequence id to an encoded data message, for fan-out.

use crate::error::ProtocolError;

/// `DownstreamMessage.data_message`: field 2, length-delimited.
const DATA_MESSAGE_KEY: u8 = 2 << 3 | 2;
/// `DataMessage.sequence_id`: field 4, varint.
const SEQUENCE_ID_KEY: u8 = 4 << 3;

/// Writes `body` — the protobuf encoding of a [`GroupMessage`] or [`ServerMessage`] without
/// a sequence id — with the sequence id `seq` added, into `out`. The result equals the
/// encoding of the same message with that sequence id, byte for byte.
///
/// This is the protobuf twin of [`splice_sequence_id`](crate::splice_sequence_id): a sender
/// fanning one message out to many reliable connections encodes it once and gives each
/// receiver its own id, without encoding the payload again. A `body` that is not such a
/// message is an error, and `out` is left as it was.
///
/// [`GroupMessage`]: crate::ServiceMessage::GroupMessage
/// [`ServerMessage`]: crate::ServiceMessage::ServerMessage
///
/// ```
/// use webpubsub_protocol::{splice_protobuf_sequence_id, Data, Metadata, ServiceMessage};
/// let msg = |sequence_id| ServiceMessage::GroupMessage {
///     group: "g".into(),
///     data: Data::from(vec![1u8, 2, 3]),
///     from_user_id: None,
///     sequence_id,
///     metadata: Metadata::from([("k", "v")]),
/// };
/// let mut out = Vec::new();
/// splice_protobuf_sequence_id(&msg(None).encode_protobuf(), 7, &mut out).unwrap();
/// assert_eq!(out, msg(Some(7)).encode_protobuf());
/// ```
pub fn splice_protobuf_sequence_id(
    body: &[u8],
    seq: u64,
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    let bad = |why: &str| {
        Err(ProtocolError::InvalidProtobuf(format!(
            "not a data message without a sequence id: {why}"
        )))
    };
    let Some((&DATA_MESSAGE_KEY, rest)) = body.split_first() else {
        return bad("the frame does not start with a data_message");
    };
    let Some((len, rest)) = read_varint(rest) else {
        return bad("truncated length");
    };
    if usize::try_from(len).ok() != Some(rest.len()) {
        return bad("the data_message's length is not the rest of the frame");
    }
    let inner = rest;
    // The fields are in field-number order: the id goes before the first field numbered
    // above 4 (metadata, 5), or at the end.
    let mut at = 0;
    while at < inner.len() {
        let Some((key, after_key)) = read_varint(&inner[at..]) else {
            return bad("truncated field key");
        };
        let field = key >> 3;
        if field == 4 {
            return bad("it already has a sequence id");
        }
        if field > 4 {
            break;
        }
        let Some(value_len) = field_len(key & 7, after_key) else {
            return bad("truncated or unknown field");
        };
        at = inner.len() - after_key.len() + value_len;
        if at > inner.len() {
            return bad("a field runs past the end");
        }
    }
    let added = 1 + varint_len(seq);
    out.reserve(body.len() + added + 1);
    out.push(DATA_MESSAGE_KEY);
    push_varint(out, inner.len() as u64 + added as u64);
    out.extend_from_slice(&inner[..at]);
    out.push(SEQUENCE_ID_KEY);
    push_varint(out, seq);
    out.extend_from_slice(&inner[at..]);
    Ok(())
}

/// The length of a field's value of the given wire type, read from its start.
fn field_len(wire_type: u64, value: &[u8]) -> Option<usize> {
    match wire_type {
        0 => {
            let (_, rest) = read_varint(value)?;
            Some(value.len() - rest.len())
        }
        1 => Some(8),
        2 => {
            let (len, rest) = read_varint(value)?;
            Some(value.len() - rest.len() + usize::try_from(len).ok()?)
        }
        5 => Some(4),
        _ => None,
    }
}

fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn varint_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Data;
    use crate::metadata::Metadata;
    use crate::service_msg::ServiceMessage;

    #[test]
    fn varints_agree_with_prost() {
        for n in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            1 << 35,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            push_varint(&mut ours, n);
            let mut theirs = Vec::new();
            prost::encode_length_delimiter(n as usize, &mut theirs).unwrap();
            assert_eq!(ours, theirs, "{n}");
            assert_eq!(varint_len(n), ours.len(), "{n}");
            assert_eq!(read_varint(&ours), Some((n, &[][..])));
        }
        assert_eq!(read_varint(&[0x80; 11]), None);
        assert_eq!(read_varint(&[0x80]), None);
    }

    #[test]
    fn a_spliced_id_equals_the_direct_encoding() {
        let payloads = [
            Data::Text(String::new()),
            Data::Binary(vec![9; 300]),
            Data::Json(serde_json::json!({"a": [1, 2]})),
            Data::Protobuf(vec![0x0a, 1, b'x']),
        ];
        for data in payloads {
            for metadata in [Metadata::new(), Metadata::from([("k", "v"), ("a", "b")])] {
                for group in [Some("g".repeat(200)), None] {
                    let msg = |sequence_id| match &group {
                        Some(group) => ServiceMessage::GroupMessage {
                            group: group.clone(),
                            data: data.clone(),
                            from_user_id: None,
                            sequence_id,
                            metadata: metadata.clone(),
                        },
                        None => ServiceMessage::ServerMessage {
                            data: data.clone(),
                            sequence_id,
                            metadata: metadata.clone(),
                        },
                    };
                    let body = msg(None).encode_protobuf();
                    for seq in [1, 127, 128, u64::MAX] {
                        let mut out = vec![0xee];
                        splice_protobuf_sequence_id(&body, seq, &mut out).unwrap();
                        assert_eq!(out[1..], msg(Some(seq)).encode_protobuf()[..], "{seq}");
                    }
                }
            }
        }
    }

    #[test]
    fn other_bodies_are_refused_and_leave_out_untouched() {
        let with_seq = ServiceMessage::ServerMessage {
            data: Data::from("x"),
            sequence_id: Some(3),
            metadata: Metadata::new(),
        }
        .encode_protobuf();
        let pong = ServiceMessage::Pong.encode_protobuf();
        let ok = ServiceMessage::ServerMessage {
            data: Data::from("x"),
            sequence_id: None,
            metadata: Metadata::new(),
        }
        .encode_protobuf();
        let mut truncated = ok.clone();
        truncated.pop();
        let mut trailing = ok.clone();
        trailing.push(0);
        for body in [
            &with_seq,
            &pong,
            &truncated,
            &trailing,
            &Vec::new(),
            &vec![0x12, 0x80],
        ] {
            let mut out = vec![1];
            assert!(
                splice_protobuf_sequence_id(body, 1, &mut out).is_err(),
                "{body:?}"
            );
            assert_eq!(out, [1]);
        }
    }
}
