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
use crate::metadata::Metadata;
use crate::service_msg::ServiceMessage;
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
