//! Payloads and metadata in JSON frames (PROTOCOL.md §5, §11).

use super::raw;
use super::write::{push_json, push_json_str};
use crate::data::{Data, DataType};
use crate::error::ProtocolError;
use crate::metadata::Metadata;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Appends `,"dataType":"…","data":…` to a JSON object being written.
pub(crate) fn write_data(out: &mut String, data: &Data) {
    out.push_str(",\"dataType\":\"");
    out.push_str(data.data_type().as_str());
    out.push_str("\",\"data\":");
    match data {
        Data::Text(s) => push_json_str(out, s),
        Data::Json(v) => push_json(out, v),
        Data::Binary(b) | Data::Protobuf(b) => {
            out.push('"');
            BASE64.encode_string(b, out);
            out.push('"');
        }
    }
}

/// Appends `,"metadata":{…}`, or nothing for empty metadata (optional fields without a value
/// are omitted).
pub(crate) fn write_metadata(out: &mut String, metadata: &Metadata) {
    if metadata.is_empty() {
        return;
    }
    out.push_str(",\"metadata\":{");
    for (i, (k, v)) in metadata.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, k);
        out.push(':');
        push_json_str(out, v);
    }
    out.push('}');
}

/// The bytes [`write_metadata`] writes, at most (exact unless a string needs escaping).
pub(crate) fn metadata_len_hint(metadata: &Metadata) -> usize {
    if metadata.is_empty() {
        0
    } else {
        14 + metadata.total_bytes() + 6 * metadata.len()
    }
}

/// Reads the `metadata` field: absent or `null` is empty; otherwise an object of strings.
pub(crate) fn read_metadata(
    message: &'static str,
    raw: Option<&RawValue>,
) -> Result<Metadata, ProtocolError> {
    Ok(raw::optional(message, "metadata", raw)?.unwrap_or_default())
}

/// Whether the frame has a `metadata` object (not `null`).
pub(crate) fn has_metadata(raw: Option<&RawValue>) -> bool {
    raw.is_some_and(|r| r.get() != "null")
}

/// Decodes the payload of a message that must have one. `Ok(None)` means the data type is
/// unknown and the message is to be skipped.
///
/// A message without `data` but with `metadata` carries empty text: a publisher may send
/// metadata alone, and Microsoft's emulator reads such a message so.
pub(crate) fn read_required_data(
    message: &'static str,
    data_type: Option<&RawValue>,
    data: Option<&RawValue>,
    metadata: Option<&RawValue>,
) -> Result<Option<Data>, ProtocolError> {
    if data.is_none() && has_metadata(metadata) {
        return Ok(Some(Data::Text(String::new())));
    }
    read_data(message, data_type, data)
}

/// Decodes `data` according to `data_type`. `Ok(None)` means the data type is unknown and
/// the message is to be skipped.
pub(crate) fn read_data(
    message: &'static str,
    data_type: Option<&RawValue>,
    data: Option<&RawValue>,
) -> Result<Option<Data>, ProtocolError> {
    match data_type {
        None => read_data_named(message, None, data),
        Some(raw) => {
            let name: Cow<'_, str> = raw::field(message, "dataType", raw)?;
            read_data_named(message, Some(&name), data)
        }
    }
}

/// [`read_data`] with the `dataType` already read as a string.
pub(crate) fn read_data_named(
    message: &'static str,
    data_type: Option<&str>,
    data: Option<&RawValue>,
) -> Result<Option<Data>, ProtocolError> {
    let ty = match data_type {
        // The service treats a missing dataType as json; so do we.
        None => DataType::Json,
        Some(name) => match DataType::parse(name) {
            Some(t) => t,
            None => return Ok(None),
        },
    };
    let Some(raw) = data else {
        if ty == DataType::Json {
            // A json message without `data` carries the value null.
            return Ok(Some(Data::Json(serde_json::Value::Null)));
        }
        return Err(ProtocolError::MissingField {
            message,
            field: "data",
        });
    };
    Ok(Some(match ty {
        DataType::Text => Data::Text(json_string(message, raw)?.into_owned()),
        DataType::Json => Data::Json(raw::field(message, "data", raw)?),
        DataType::Binary | DataType::Protobuf => {
            let text = json_string(message, raw)?;
            let bytes =
                BASE64
                    .decode(text.as_bytes())
                    .map_err(|e| ProtocolError::InvalidField {
                        message,
                        field: "data",
                        reason: format!("invalid base64: {e}"),
                    })?;
            if ty == DataType::Binary {
                Data::Binary(bytes)
            } else {
                Data::Protobuf(bytes)
            }
        }
    }))
}

/// The string a raw `data` value holds. A JSON string without a backslash is its own content
/// between the quotes (the raw value was validated: no control characters, and its only
/// unescaped quote is the closing one), so it is borrowed without a second parse.
fn json_string<'a>(
    message: &'static str,
    raw: &'a RawValue,
) -> Result<Cow<'a, str>, ProtocolError> {
    let s = raw.get();
    if s.len() >= 2 && s.starts_with('"') && !s.as_bytes().contains(&b'\\') {
        return Ok(Cow::Borrowed(&s[1..s.len() - 1]));
    }
    raw::field::<String>(message, "data", raw).map(Cow::Owned)
}

/// An upper estimate of the length [`write_data`] writes (exact unless the text needs
/// escaping or the payload is JSON).
pub(crate) fn data_len_hint(data: &Data) -> usize {
    // `,"dataType":"protobuf","data":` and the quotes.
    32 + match data {
        Data::Text(s) => s.len(),
        Data::Json(_) => 64,
        Data::Binary(b) | Data::Protobuf(b) => b.len().div_ceil(3) * 4,
    }
}
