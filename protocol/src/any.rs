//! `google.protobuf.Any`, the envelope of `protobuf` payloads.

use crate::error::ProtocolError;

/// A `google.protobuf.Any`: a protobuf message together with the URL of its type. A
/// [`Data::Protobuf`](crate::Data::Protobuf) payload is one of these, serialised.
///
/// Declared here with prost's derive rather than taken from `prost-types`: the message is two
/// fields whose wire form never changes, and `prost-types` would bring in every other
/// well-known type for it.
///
/// ```
/// use webpubsub_protocol::{Data, ProtobufAny};
/// let any = ProtobufAny::new("type.googleapis.com/demo.Point", vec![8, 1, 16, 2]);
/// let data = Data::from(any.clone());
/// assert_eq!(data.protobuf_any(), Some(Ok(any)));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct ProtobufAny {
    /// The type's URL, e.g. `type.googleapis.com/package.Message`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The serialised message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

impl ProtobufAny {
    /// An `Any` of the given type URL and serialised message.
    pub fn new(type_url: impl Into<String>, value: impl Into<Vec<u8>>) -> ProtobufAny {
        ProtobufAny {
            type_url: type_url.into(),
            value: value.into(),
        }
    }

    /// The serialised `Any`: what [`Data::Protobuf`](crate::Data::Protobuf) holds.
    pub fn to_bytes(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(self)
    }

    /// Reads a serialised `Any`.
    pub fn from_bytes(bytes: &[u8]) -> Result<ProtobufAny, ProtocolError> {
        <ProtobufAny as prost::Message>::decode(bytes)
            .map_err(|e| ProtocolError::InvalidProtobuf(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_has_the_wire_form_of_the_test_vector() {
        // PROTOBUF.md's "sendToGroup protobuf Any": {1:"example",2:"xyz"}.
        let any = ProtobufAny::new("example", b"xyz".to_vec());
        assert_eq!(any.to_bytes(), b"\x0a\x07example\x12\x03xyz");
        assert_eq!(ProtobufAny::from_bytes(&any.to_bytes()), Ok(any));
    }

    #[test]
    fn bytes_that_are_not_an_any_are_an_error() {
        for bad in [&b"\x0a\x05ab"[..], b"\x0a\x02\xff\xfe", b"\x07", b"\x01"] {
            assert!(ProtobufAny::from_bytes(bad).is_err(), "{bad:?}");
        }
    }
}
