//! One-pass decoding of the service's frames: the receive loop's hot path.
//!
//! [`decode`] reads a frame in a single serde pass into typed fields (strings borrowed from
//! the frame when they have no escapes, ids as `u64`, flags as `bool`); only `data` and
//! `error` stay raw, because how they are read depends on other fields. It is deliberately
//! stricter than the two-pass decoder of `service_msg.rs`: any field of an unexpected type
//! (even `null`), a frame that is not an object, a message kind it does not handle — anything
//! unusual makes it give up (`None`), and the caller then runs the two-pass decoder, which
//! alone decides between `Unknown` and a [`ProtocolError`](super::ProtocolError). So forward
//! compatibility and error reporting stay exactly those of the two-pass decoder; when this
//! one answers, it answers the same (unit-tested below against the two-pass decoder on
//! generated and mutated frames).

use super::data::Data;
use super::raw::optional;
use super::service_msg::ServiceMessage;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Decodes the common, well-formed frames (`message`, `ack`, `pong`); `None` means "ask the
/// two-pass decoder".
pub(crate) fn decode(text: &str) -> Option<ServiceMessage> {
    let f: Frame<'_> = serde_json::from_str(text).ok()?;
    match f.ty.as_deref()? {
        "message" => {
            let from_group = match f.from.as_deref()? {
                "group" => true,
                "server" => false,
                _ => return None,
            };
            // An unknown dataType (`Ok(None)`) is the two-pass decoder's call too.
            let data = Data::decode_named("message", f.data_type.as_deref(), f.data).ok()??;
            if from_group {
                Some(ServiceMessage::GroupMessage {
                    group: f.group?.into_owned(),
                    data,
                    from_user_id: f.from_user_id.map(Cow::into_owned),
                    sequence_id: f.sequence_id,
                })
            } else {
                Some(ServiceMessage::ServerMessage {
                    data,
                    sequence_id: f.sequence_id,
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
                        // Not used by the messages decoded here: checked as JSON only.
                        Key::Event
                        | Key::ConnectionId
                        | Key::UserId
                        | Key::ReconnectionToken
                        | Key::Message
                        | Key::InvocationId
                        | Key::NoEcho
                        | Key::Target
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

    /// xorshift64*: deterministic frames without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len())]
        }
    }

    const KEYS: [&str; 22] = [
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
        "other",
        "Type",
        // An escaped key is the same key.
        "typ\\u0065",
        "d\\u0061ta",
    ];

    const VALUES: [&str; 40] = [
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
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let mut answered = 0;
        const FRAMES: usize = 60_000;
        for _ in 0..FRAMES {
            let text = frame(&mut rng);
            if let Some(fast) = decode(&text) {
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
    }

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
            r#"["ack",null]"#,
        ] {
            assert!(decode(text).is_none(), "{text}");
        }
    }
}
