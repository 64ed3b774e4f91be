//! One-pass decoding of the service's JSON frames: the receive loop's hot path.
//!
//! [`decode`] reads a frame in a single serde pass into typed fields (strings borrowed from
//! the frame when they have no escapes, ids as `u64`, flags as `bool`); only `data` and
//! `error` stay raw, because how they are read depends on other fields. It is deliberately
//! stricter than the two-pass decoder of `service_msg.rs`: any field of an unexpected type
//! (even `null`), a frame that is not an object, a message kind it does not handle — anything
//! unusual makes it give up (`None`), and the caller then runs the two-pass decoder, which
//! alone decides between `Unknown` and a [`ProtocolError`](crate::ProtocolError). So forward
//! compatibility and error reporting stay exactly those of the two-pass decoder; when this
//! one answers, it answers the same (unit-tested in `service.rs` against the two-pass decoder
//! on generated and mutated frames).
//!
//! A frame with `metadata` is left to the two-pass decoder too: metadata is rare, and keeping
//! it out of this decoder keeps the common frame's cost exactly what it was.

use super::data::read_data_named;
use super::raw::optional;
use crate::data::{Data, DataType};
use crate::metadata::Metadata;
use crate::service_msg::ServiceMessage;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Decodes the common, well-formed frames (`message`, `ack`, `pong`); `None` means "ask the
/// two-pass decoder".
pub(crate) fn decode(text: &str) -> Option<ServiceMessage> {
    decode_flat(text).or_else(|| decode_serde(text))
}

/// The one-pass serde decoder.
fn decode_serde(text: &str) -> Option<ServiceMessage> {
    let f: Frame<'_> = serde_json::from_str(text).ok()?;
    match f.ty.as_deref()? {
        "message" => {
            let from_group = match f.from.as_deref()? {
                "group" => true,
                "server" => false,
                _ => return None,
            };
            // An unknown dataType (`Ok(None)`) is the two-pass decoder's call too.
            let data = read_data_named("message", f.data_type.as_deref(), f.data).ok()??;
            if from_group {
                Some(ServiceMessage::GroupMessage {
                    group: f.group?.into_owned(),
                    data,
                    from_user_id: f.from_user_id.map(Cow::into_owned),
                    sequence_id: f.sequence_id,
                    metadata: Metadata::new(),
                })
            } else {
                Some(ServiceMessage::ServerMessage {
                    data,
                    sequence_id: f.sequence_id,
                    metadata: Metadata::new(),
                })
            }
        }
        "ack" => Some(ServiceMessage::Ack {
            ack_id: f.ack_id?,
            success: f.success?,
            error: optional("ack", "error", f.error).ok()?,
        }),
        "pong" => Some(ServiceMessage::Pong),
        _ => None,
    }
}

/// The frames the service writes most, read by hand: one flat object, no whitespace, every
/// key one of those below at most once, strings without a backslash, ids in plain digits,
/// `data` a string of `text` or base64. Anything else — an escape, a nested value, `null`,
/// another key, a number the serde decoder might read otherwise — is `None`, and
/// [`decode_serde`] reads the frame; so whatever this answers is what that answers (the
/// differential test in `service.rs` runs both through [`decode`]).
pub(crate) fn decode_flat(text: &str) -> Option<ServiceMessage> {
    let mut r = Flat {
        b: text.as_bytes(),
        i: 0,
    };
    let mut f = FlatFrame::default();
    r.eat(b'{')?;
    loop {
        let key = r.string(text)?;
        r.eat(b':')?;
        match key {
            "type" => once(&mut f.ty, r.string(text)?)?,
            "from" => once(&mut f.from, r.string(text)?)?,
            "group" => once(&mut f.group, r.string(text)?)?,
            "fromUserId" => once(&mut f.from_user_id, r.string(text)?)?,
            "dataType" => once(&mut f.data_type, r.string(text)?)?,
            "data" => once(&mut f.data, r.string(text)?)?,
            "ackId" => once(&mut f.ack_id, r.digits()?)?,
            "sequenceId" => once(&mut f.sequence_id, r.digits()?)?,
            "success" => once(&mut f.success, r.boolean()?)?,
            _ => return None,
        }
        match r.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    if r.i != r.b.len() {
        return None;
    }
    match f.ty? {
        "message" => {
            let data = match DataType::parse(f.data_type?)? {
                DataType::Text => Data::Text(f.data?.to_owned()),
                DataType::Binary => Data::Binary(BASE64.decode(f.data?).ok()?),
                DataType::Protobuf => Data::Protobuf(BASE64.decode(f.data?).ok()?),
                // A JSON payload is parsed by serde.
                DataType::Json => return None,
            };
            match f.from? {
                "group" => Some(ServiceMessage::GroupMessage {
                    group: f.group?.to_owned(),
                    data,
                    from_user_id: f.from_user_id.map(str::to_owned),
                    sequence_id: f.sequence_id,
                    metadata: Metadata::new(),
                }),
                "server" => Some(ServiceMessage::ServerMessage {
                    data,
                    sequence_id: f.sequence_id,
                    metadata: Metadata::new(),
                }),
                _ => None,
            }
        }
        "ack" => Some(ServiceMessage::Ack {
            ack_id: f.ack_id?,
            success: f.success?,
            error: None,
        }),
        "pong" => Some(ServiceMessage::Pong),
        _ => None,
    }
}

/// The fields [`decode_flat`] reads, strings borrowed from the frame.
#[derive(Default)]
struct FlatFrame<'a> {
    ty: Option<&'a str>,
    from: Option<&'a str>,
    group: Option<&'a str>,
    from_user_id: Option<&'a str>,
    data_type: Option<&'a str>,
    data: Option<&'a str>,
    ack_id: Option<u64>,
    sequence_id: Option<u64>,
    success: Option<bool>,
}

/// Sets a field seen for the first time; `None` for a repeated key.
fn once<T>(field: &mut Option<T>, value: T) -> Option<()> {
    if field.is_some() {
        return None;
    }
    *field = Some(value);
    Some(())
}

/// A cursor over a frame's bytes.
struct Flat<'a> {
    b: &'a [u8],
    i: usize,
}

impl Flat<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// A string without escapes or control characters: its content is its bytes. `text` is
    /// the frame as `str` (the quotes are ASCII, so the slice is on character boundaries).
    fn string<'t>(&mut self, text: &'t str) -> Option<&'t str> {
        self.eat(b'"')?;
        let start = self.i;
        let end = start + string_end(&self.b[start..]);
        if self.b.get(end) != Some(&b'"') {
            return None;
        }
        self.i = end + 1;
        text.get(start..end)
    }

    /// A `u64` in plain digits, without a leading zero, followed by `,` or `}`.
    fn digits(&mut self) -> Option<u64> {
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_digit() {
                break;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let len = self.i - start;
        if len == 0 || (len > 1 && self.b[start] == b'0') {
            return None;
        }
        matches!(self.b.get(self.i), Some(b',' | b'}')).then_some(n)
    }

    fn boolean(&mut self) -> Option<bool> {
        let rest = &self.b[self.i..];
        let (value, len) = if rest.starts_with(b"true") {
            (true, 4)
        } else if rest.starts_with(b"false") {
            (false, 5)
        } else {
            return None;
        };
        self.i += len;
        Some(value)
    }
}

/// The index of the first `"`, `\\` or control character in `b` (`b.len()` if none): eight
/// bytes at a time, each test a borrow into the high bit of the bytes that match (exact for
/// the first match, which is the one taken).
fn string_end(b: &[u8]) -> usize {
    const ONES: u64 = u64::MAX / 255;
    let chunks = b.chunks_exact(8);
    let tail = b.len() - chunks.remainder().len();
    for (n, chunk) in chunks.enumerate() {
        let v = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes);
        let control = v.wrapping_sub(ONES * 0x20) & !v;
        let q = v ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let e = v ^ (ONES * u64::from(b'\\'));
        let escape = e.wrapping_sub(ONES) & !e;
        let hits = (control | quote | escape) & (ONES << 7);
        if hits != 0 {
            return n * 8 + (hits.trailing_zeros() / 8) as usize;
        }
    }
    tail + b[tail..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .unwrap_or(b.len() - tail)
}

/// The fields of a service frame, each present only with the expected type.
#[derive(Default)]
struct Frame<'a> {
    ty: Option<Cow<'a, str>>,
    from: Option<Cow<'a, str>>,
    group: Option<Cow<'a, str>>,
    from_user_id: Option<Cow<'a, str>>,
    data_type: Option<Cow<'a, str>>,
    ack_id: Option<u64>,
    sequence_id: Option<u64>,
    success: Option<bool>,
    /// Raw, `null` included: `optional` reads it as the two-pass decoder does.
    error: Option<&'a RawValue>,
    /// Raw, `null` included (the JSON payload null).
    data: Option<&'a RawValue>,
}

/// Every field name the two-pass decoder's `RawFrame` knows. A repeated one makes that
/// decoder refuse the frame, so it must make this one give up; unlisted names are ignored
/// by both.
#[derive(Clone, Copy)]
enum Key {
    Type,
    Event,
    From,
    Group,
    AckId,
    Success,
    Error,
    DataType,
    Data,
    FromUserId,
    SequenceId,
    ConnectionId,
    UserId,
    ReconnectionToken,
    Message,
    NoEcho,
    InvocationId,
    Target,
    TtlSeconds,
    Metadata,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "type" => Key::Type,
                    "event" => Key::Event,
                    "from" => Key::From,
                    "group" => Key::Group,
                    "ackId" => Key::AckId,
                    "success" => Key::Success,
                    "error" => Key::Error,
                    "dataType" => Key::DataType,
                    "data" => Key::Data,
                    "fromUserId" => Key::FromUserId,
                    "sequenceId" => Key::SequenceId,
                    "connectionId" => Key::ConnectionId,
                    "userId" => Key::UserId,
                    "reconnectionToken" => Key::ReconnectionToken,
                    "message" => Key::Message,
                    "noEcho" => Key::NoEcho,
                    "invocationId" => Key::InvocationId,
                    "target" => Key::Target,
                    "ttlSeconds" => Key::TtlSeconds,
                    "metadata" => Key::Metadata,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// A JSON string (never `null`), borrowed from the frame when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Str<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Frame<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Frame<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Frame<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            // Only `visit_map`: `deserialize_map` refuses arrays, which a derived struct
            // (the two-pass decoder's) would read positionally.
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Frame<'de>, A::Error> {
                let mut f = Frame::default();
                let mut seen = 0u32;
                while let Some(key) = map.next_key::<Key>()? {
                    if !matches!(key, Key::Other) {
                        let bit = 1u32 << key as u32;
                        if seen & bit != 0 {
                            return Err(de::Error::custom("duplicate field"));
                        }
                        seen |= bit;
                    }
                    let s = |m: &mut A| m.next_value::<Str<'de>>().map(|s| Some(s.0));
                    match key {
                        Key::Type => f.ty = s(&mut map)?,
                        Key::From => f.from = s(&mut map)?,
                        Key::Group => f.group = s(&mut map)?,
                        Key::FromUserId => f.from_user_id = s(&mut map)?,
                        Key::DataType => f.data_type = s(&mut map)?,
                        Key::AckId => f.ack_id = Some(map.next_value()?),
                        Key::SequenceId => f.sequence_id = Some(map.next_value()?),
                        Key::Success => f.success = Some(map.next_value()?),
                        Key::Error => f.error = Some(map.next_value()?),
                        Key::Data => f.data = Some(map.next_value()?),
                        Key::Metadata => return Err(de::Error::custom("metadata: two-pass")),
                        // Not used by the messages decoded here: checked as JSON only.
                        Key::Event
                        | Key::ConnectionId
                        | Key::UserId
                        | Key::ReconnectionToken
                        | Key::Message
                        | Key::InvocationId
                        | Key::NoEcho
                        | Key::Target
                        | Key::TtlSeconds
                        | Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(f)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_frames_take_the_one_pass_path() {
        for text in [
            r#"{"sequenceId":7,"type":"message","from":"group","group":"g","dataType":"text","data":"x"}"#,
            r#"{"type":"message","from":"server","dataType":"Text","data":"a\"b"}"#,
            r#"{"type":"ack","ackId":1,"success":true}"#,
            r#"{"type":"ack","ackId":2,"success":false,"error":{"name":"Duplicate","message":""}}"#,
            r#"{"type":"pong"}"#,
        ] {
            assert!(decode(text).is_some(), "{text}");
        }
        // Unusual frames are the two-pass decoder's.
        for text in [
            r#"{"type":"message","from":"server","dataType":"text","data":"x","sequenceId":null}"#,
            r#"{"type":"message","from":"peer","dataType":"text","data":"x"}"#,
            r#"{"type":"ack","ackId":1,"success":true,"type":"ack"}"#,
            r#"{"type":"ack","ackId":1,"success":true,"target":1,"target":2}"#,
            r#"{"type":"ack","ackId":1,"success":true,"ttlSeconds":1,"ttlSeconds":2}"#,
            r#"{"type":"message","from":"server","dataType":"text","data":"x","metadata":{"k":"v"}}"#,
            r#"{"type":"message","from":"server","dataType":"text","data":"x","metadata":null}"#,
            r#"["ack",null]"#,
        ] {
            assert!(decode(text).is_none(), "{text}");
        }
    }
}

#[cfg(test)]
mod flat_tests {
    use super::*;

    #[test]
    fn the_hand_read_path_reads_the_frames_the_service_writes_most() {
        let group = r#"{"type":"message","from":"group","fromUserId":"u","group":"g","dataType":"text","data":"hi é","sequenceId":7}"#;
        assert_eq!(
            decode_flat(group),
            Some(ServiceMessage::GroupMessage {
                group: "g".into(),
                data: Data::Text("hi é".into()),
                from_user_id: Some("u".into()),
                sequence_id: Some(7),
                metadata: Metadata::new(),
            })
        );
        let server = r#"{"sequenceId":18446744073709551615,"type":"message","from":"server","dataType":"binary","data":"AAH/"}"#;
        assert_eq!(
            decode_flat(server),
            Some(ServiceMessage::ServerMessage {
                data: Data::Binary(vec![0, 1, 255]),
                sequence_id: Some(u64::MAX),
                metadata: Metadata::new(),
            })
        );
        assert_eq!(
            decode_flat(r#"{"type":"ack","ackId":0,"success":true}"#),
            Some(ServiceMessage::Ack {
                ack_id: 0,
                success: true,
                error: None,
            })
        );
    }

    #[test]
    fn a_string_ends_at_its_first_quote_escape_or_control_character() {
        // Every position, inside the eight-byte steps and in the tail.
        for len in 0..20 {
            for (stop, c) in [
                (true, b'"'),
                (true, b'\\'),
                (true, 0x1f),
                (true, 0),
                (false, 0x7f),
            ] {
                for at in 0..len {
                    let mut b = vec![b'a'; len];
                    b[at] = c;
                    let want = if stop { at } else { len };
                    assert_eq!(string_end(&b), want, "{c:#x} at {at} of {len}");
                }
            }
            assert_eq!(string_end("é€😀".repeat(len).as_bytes()), 9 * len);
        }
    }

    #[test]
    fn anything_unusual_is_left_to_the_serde_decoders() {
        for text in [
            r#"{"type":"message","from":"server","dataType":"text","data":"a\"b"}"#,
            r#"{"type":"message","from":"server","dataType":"json","data":"x"}"#,
            r#"{"type":"message","from":"server","data":"x"}"#,
            r#"{"type":"message","from":"server","dataType":"binary","data":"!!"}"#,
            r#"{"type":"message","from":"server","dataType":"text","data":"x","metadata":{}}"#,
            r#"{"type":"ack","ackId":01,"success":true}"#,
            r#"{"type":"ack","ackId":1.0,"success":true}"#,
            r#"{"type":"ack","ackId":18446744073709551616,"success":true}"#,
            r#"{"type":"ack","ackId":1,"ackId":2,"success":true}"#,
            r#"{"type":"ack","ackId":1,"success":null}"#,
            r#"{"type":"ack","ackId":1,"success":false,"error":{"name":"Forbidden"}}"#,
            r#"{"type": "ack","ackId":1,"success":true}"#,
            r#"{"type":"ack","ackId":1,"success":true} "#,
            r#"{"type":"ack","ackId":1,"success":true"#,
            r#"{"type":"system","event":"connected"}"#,
        ] {
            assert_eq!(decode_flat(text), None, "{text}");
        }
    }
}
