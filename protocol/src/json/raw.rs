//! First decoding pass: a frame's fields as borrowed, unparsed JSON.
//!
//! Every field is kept as a `&RawValue`, so one pass checks the JSON syntax without
//! building a tree, a field of an unexpected type in a message we will skip is never an
//! error, and each message kind then parses only the fields it needs.

use crate::error::ProtocolError;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Every field any message of either direction uses. Unknown fields are ignored.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawFrame<'a> {
    #[serde(rename = "type", borrow)]
    pub ty: Option<&'a RawValue>,
    #[serde(borrow)]
    pub event: Option<&'a RawValue>,
    #[serde(borrow)]
    pub from: Option<&'a RawValue>,
    #[serde(borrow)]
    pub group: Option<&'a RawValue>,
    #[serde(borrow)]
    pub ack_id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub success: Option<&'a RawValue>,
    #[serde(borrow)]
    pub error: Option<&'a RawValue>,
    #[serde(borrow)]
    pub data_type: Option<&'a RawValue>,
    /// Unlike the other fields, `"data": null` is kept (as the raw text `null`): it is the
    /// JSON payload null, not an absent payload.
    #[serde(borrow, default, deserialize_with = "present")]
    pub data: Option<&'a RawValue>,
    #[serde(borrow)]
    pub from_user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub sequence_id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub connection_id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub reconnection_token: Option<&'a RawValue>,
    #[serde(borrow)]
    pub message: Option<&'a RawValue>,
    #[serde(borrow)]
    pub no_echo: Option<&'a RawValue>,
    #[serde(borrow)]
    pub invocation_id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub target: Option<&'a RawValue>,
    #[serde(borrow)]
    pub ttl_seconds: Option<&'a RawValue>,
    #[serde(borrow)]
    pub metadata: Option<&'a RawValue>,
}

/// Reads a field that is present, even when its value is `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

impl<'a> RawFrame<'a> {
    /// Splits a frame into its fields; fails only on text that is not a JSON object.
    pub fn parse(text: &'a str) -> Result<RawFrame<'a>, ProtocolError> {
        serde_json::from_str(text).map_err(|e| ProtocolError::InvalidJson(e.to_string()))
    }

    /// The `type` field as a string; `None` when absent or not a string.
    pub fn kind(&self) -> Option<std::borrow::Cow<'a, str>> {
        self.ty.and_then(opt_str)
    }
}

/// A string field that decides how a frame is read (`type`, `event`, `from`): anything
/// but a string counts as unknown rather than malformed.
pub(crate) fn opt_str<'a>(raw: &'a RawValue) -> Option<std::borrow::Cow<'a, str>> {
    serde_json::from_str::<std::borrow::Cow<'a, str>>(raw.get()).ok()
}

/// Parses one field of a known message.
pub(crate) fn field<'a, T: Deserialize<'a>>(
    message: &'static str,
    field: &'static str,
    raw: &'a RawValue,
) -> Result<T, ProtocolError> {
    serde_json::from_str(raw.get()).map_err(|e| ProtocolError::InvalidField {
        message,
        field,
        reason: e.to_string(),
    })
}

/// Parses a required field of a known message.
pub(crate) fn required<'a, T: Deserialize<'a>>(
    message: &'static str,
    name: &'static str,
    raw: Option<&'a RawValue>,
) -> Result<T, ProtocolError> {
    match raw {
        Some(raw) => field(message, name, raw),
        None => Err(ProtocolError::MissingField {
            message,
            field: name,
        }),
    }
}

/// Parses an optional field of a known message; JSON `null` counts as absent.
pub(crate) fn optional<'a, T: Deserialize<'a>>(
    message: &'static str,
    name: &'static str,
    raw: Option<&'a RawValue>,
) -> Result<Option<T>, ProtocolError> {
    match raw {
        Some(raw) if raw.get() != "null" => field(message, name, raw).map(Some),
        _ => Ok(None),
    }
}
