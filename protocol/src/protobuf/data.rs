//! Payloads and metadata in protobuf frames (PROTOBUF.md "MessageData").

use super::wire::{MessageData, MetadataEntry, Payload};
use crate::data::Data;
use crate::error::ProtocolError;
use crate::metadata::Metadata;
use prost::bytes::Bytes;

/// The wire form of a payload. Text, bytes and the serialised `Any` are copied as they are;
/// JSON is serialised into `json_data` (as the JS client sends it).
pub(crate) fn to_wire(data: &Data) -> MessageData {
    MessageData {
        data: Some(match data {
            Data::Text(s) => Payload::Text(s.clone()),
            Data::Json(v) => Payload::Json(v.to_string()),
            Data::Binary(b) => Payload::Binary(Bytes::copy_from_slice(b)),
            Data::Protobuf(b) => Payload::Protobuf(Bytes::copy_from_slice(b)),
        }),
    }
}

/// The payload of a `MessageData`. `Ok(None)` means it has no data case this version knows
/// (a new data type, or none at all): the message is to be skipped.
///
/// `text_data` is text even when it holds JSON (.NET's client sends json that way): only
/// `json_data` is JSON.
pub(crate) fn from_wire(
    message: &'static str,
    data: MessageData,
) -> Result<Option<Data>, ProtocolError> {
    Ok(match data.data {
        None => None,
        Some(Payload::Text(s)) => Some(Data::Text(s)),
        Some(Payload::Binary(b)) => Some(Data::Binary(Vec::from(b))),
        Some(Payload::Protobuf(b)) => Some(Data::Protobuf(Vec::from(b))),
        Some(Payload::Json(s)) => Some(Data::Json(serde_json::from_str(&s).map_err(|e| {
            ProtocolError::InvalidField {
                message,
                field: "json_data",
                reason: e.to_string(),
            }
        })?)),
    })
}

/// The payload of a message that must have one; `Ok(None)` as in [`from_wire`]. A message
/// without data but with metadata carries empty text, as in JSON.
pub(crate) fn required_from_wire(
    message: &'static str,
    data: Option<MessageData>,
    metadata: &Metadata,
) -> Result<Option<Data>, ProtocolError> {
    match data {
        Some(data) => from_wire(message, data),
        None if !metadata.is_empty() => Ok(Some(Data::Text(String::new()))),
        None => Err(ProtocolError::MissingField {
            message,
            field: "data",
        }),
    }
}

pub(crate) fn metadata_to_wire(metadata: &Metadata) -> Vec<MetadataEntry> {
    metadata
        .iter()
        .map(|(k, v)| MetadataEntry {
            key: k.to_owned(),
            value: v.to_owned(),
        })
        .collect()
}

/// A map's entries as [`Metadata`]; for a repeated key the last wins (protobuf's map rule).
pub(crate) fn metadata_from_wire(entries: Vec<MetadataEntry>) -> Metadata {
    if entries.is_empty() {
        return Metadata::new();
    }
    Metadata::from_entries_last_wins(entries.into_iter().map(|e| (e.key, e.value)).collect())
}

/// A sequence id: absent or 0 is none (0 is never a valid one).
pub(crate) fn sequence_id(id: Option<u64>) -> Option<u64> {
    id.filter(|&id| id != 0)
}

/// A prost error as ours.
pub(crate) fn invalid(e: prost::DecodeError) -> ProtocolError {
    ProtocolError::InvalidProtobuf(e.to_string())
}
