//! Payloads and their data types (PROTOCOL.md §5).

use crate::any::ProtobufAny;
use crate::error::ProtocolError;

/// How a payload is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// UTF-8 text: a JSON string, protobuf `text_data`.
    Text,
    /// Any JSON value: embedded as is in JSON, serialised into protobuf `json_data`.
    Json,
    /// Bytes: standard base64 in JSON, raw protobuf `binary_data`.
    Binary,
    /// A serialised `google.protobuf.Any`: standard base64 in JSON, the embedded message
    /// `protobuf_data` in protobuf.
    Protobuf,
}

impl DataType {
    /// The wire name, lower case as the service documents it.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Text => "text",
            DataType::Json => "json",
            DataType::Binary => "binary",
            DataType::Protobuf => "protobuf",
        }
    }

    /// Parses a wire name, ignoring ASCII case (.NET sends `Text`, `Json`, …).
    /// Returns `None` for a name this version does not know.
    pub fn parse(name: &str) -> Option<DataType> {
        [
            DataType::Text,
            DataType::Json,
            DataType::Binary,
            DataType::Protobuf,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message payload together with its data type.
///
/// Build one from what you have: `&str` and `String` become [`Data::Text`],
/// [`serde_json::Value`] becomes [`Data::Json`], `Vec<u8>` and `&[u8]` become
/// [`Data::Binary`]; [`Data::json`] serialises any `Serialize` value.
///
/// ```
/// use webpubsub_protocol::Data;
/// assert_eq!(Data::from("hi"), Data::Text("hi".into()));
/// assert_eq!(Data::from(vec![1u8, 2]), Data::Binary(vec![1, 2]));
/// assert_eq!(Data::from(serde_json::json!({"a": 1})).data_type().as_str(), "json");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// Text (`dataType: "text"`).
    Text(String),
    /// A JSON value (`dataType: "json"`).
    Json(serde_json::Value),
    /// Bytes (`dataType: "binary"`).
    Binary(Vec<u8>),
    /// A serialised `google.protobuf.Any` (`dataType: "protobuf"`).
    ///
    /// The bytes are the same in both codecs: base64 in a JSON frame, the `protobuf_data`
    /// field's content in a protobuf frame (copied, never re-encoded), so a payload crosses
    /// from one subprotocol to the other unchanged. Build one from a [`ProtobufAny`]
    /// (`Data::from(any)`), read it with [`Data::protobuf_any`]; decoders do not parse the
    /// `Any` (a receiver gets what was sent), a sender can check it with
    /// [`check_protobuf_payload`](crate::check_protobuf_payload).
    Protobuf(Vec<u8>),
}

impl Data {
    /// Serialises `value` as a [`Data::Json`] payload.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Data, serde_json::Error> {
        serde_json::to_value(value).map(Data::Json)
    }

    /// The payload's data type.
    pub fn data_type(&self) -> DataType {
        match self {
            Data::Text(_) => DataType::Text,
            Data::Json(_) => DataType::Json,
            Data::Binary(_) => DataType::Binary,
            Data::Protobuf(_) => DataType::Protobuf,
        }
    }

    /// The text of a [`Data::Text`] payload.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Data::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a [`Data::Json`] payload.
    pub fn as_json(&self) -> Option<&serde_json::Value> {
        match self {
            Data::Json(v) => Some(v),
            _ => None,
        }
    }

    /// The bytes of a [`Data::Binary`] or [`Data::Protobuf`] payload.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Data::Binary(b) | Data::Protobuf(b) => Some(b),
            _ => None,
        }
    }

    /// The `Any` a [`Data::Protobuf`] payload holds, read from its bytes; `None` for the
    /// other data types.
    pub fn protobuf_any(&self) -> Option<Result<ProtobufAny, ProtocolError>> {
        match self {
            Data::Protobuf(bytes) => Some(ProtobufAny::from_bytes(bytes)),
            _ => None,
        }
    }
}

impl From<ProtobufAny> for Data {
    /// A [`Data::Protobuf`] payload of the serialised `Any`.
    fn from(any: ProtobufAny) -> Data {
        Data::Protobuf(any.to_bytes())
    }
}

impl From<&ProtobufAny> for Data {
    fn from(any: &ProtobufAny) -> Data {
        Data::Protobuf(any.to_bytes())
    }
}

impl From<&str> for Data {
    fn from(s: &str) -> Data {
        Data::Text(s.to_owned())
    }
}

impl From<String> for Data {
    fn from(s: String) -> Data {
        Data::Text(s)
    }
}

impl From<&String> for Data {
    fn from(s: &String) -> Data {
        Data::Text(s.clone())
    }
}

impl From<serde_json::Value> for Data {
    fn from(v: serde_json::Value) -> Data {
        Data::Json(v)
    }
}

impl From<Vec<u8>> for Data {
    fn from(b: Vec<u8>) -> Data {
        Data::Binary(b)
    }
}

impl From<&[u8]> for Data {
    fn from(b: &[u8]) -> Data {
        Data::Binary(b.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for Data {
    fn from(b: &[u8; N]) -> Data {
        Data::Binary(b.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_type_parses_any_case_and_writes_lower_case() {
        assert_eq!(DataType::parse("Text"), Some(DataType::Text));
        assert_eq!(DataType::parse("JSON"), Some(DataType::Json));
        assert_eq!(DataType::parse("bInArY"), Some(DataType::Binary));
        assert_eq!(DataType::parse("protobuf"), Some(DataType::Protobuf));
        assert_eq!(DataType::parse("xml"), None);
        assert_eq!(DataType::Binary.to_string(), "binary");
    }

    #[test]
    fn json_helper_serialises_structs() {
        #[derive(serde::Serialize)]
        struct Point {
            x: i32,
        }
        assert_eq!(
            Data::json(&Point { x: 3 }).unwrap(),
            Data::Json(serde_json::json!({"x": 3}))
        );
    }
}
