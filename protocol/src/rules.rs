//! The rules of the wire that both sides apply: name lengths, the message size limit, the
//! limits of metadata and TTL, and which values are secrets that no log line may show.
//!
//! One definition each, so that anything a client lets through, the service (or the
//! emulator) accepts, and the same secrets are hidden everywhere with the same marker.

use crate::any::ProtobufAny;
use crate::metadata::Metadata;
use std::fmt;

/// The largest message the service accepts, in bytes: the encoded WebSocket frame for
/// client requests, the request body for REST sends (PROTOCOL.md §5).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// The longest group name the service accepts, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 1024;

/// The longest metadata key the service accepts, in bytes (PROTOCOL.md §11).
pub const MAX_METADATA_KEY_BYTES: usize = 256;
/// The longest metadata value the service accepts, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 1024;
/// The most metadata one message may carry: the bytes of all its keys and values together.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// The longest time to live of a `sendToGroup`, in seconds (also REST's `messageTtlSeconds`).
pub const MAX_TTL_SECONDS: u32 = 300;

/// What stands in for a secret in logs, `Debug` output and error texts.
pub const REDACTED: &str = "***";

/// Query parameters whose values are secrets: the access token, the reconnection token,
/// the names the server SDKs use for keys and tokens, and `code`, the function key of an
/// Azure Functions event handler's URL. Compared ignoring ASCII case.
pub const SECRET_QUERY_PARAMS: [&str; 5] = [
    "access_token",
    "awps_reconnection_token",
    "token",
    "accesskey",
    "code",
];

/// A value the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleError {
    /// A group name is empty.
    EmptyGroupName,
    /// A group name is longer than [`MAX_GROUP_NAME_CHARS`].
    GroupNameTooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// An event name is empty.
    EmptyEventName,
    /// A message is larger than [`MAX_MESSAGE_BYTES`].
    MessageTooLarge {
        /// Its size in bytes.
        size: usize,
    },
    /// A metadata key is empty or has a character that is not an HTTP token character
    /// (letters, digits and ``!#$%&'*+-.^_`|~``): keys travel as parts of HTTP header names.
    InvalidMetadataKey {
        /// The key.
        key: String,
    },
    /// A metadata key is longer than [`MAX_METADATA_KEY_BYTES`].
    MetadataKeyTooLong {
        /// Its length in bytes.
        bytes: usize,
    },
    /// A metadata value has a character that is not ASCII, or an ASCII control character
    /// other than tab: values travel as HTTP header values.
    InvalidMetadataValue {
        /// The value's key.
        key: String,
    },
    /// A metadata value is longer than [`MAX_METADATA_VALUE_BYTES`].
    MetadataValueTooLong {
        /// The value's key.
        key: String,
        /// Its length in bytes.
        bytes: usize,
    },
    /// The keys and values of a message's metadata add up to more than
    /// [`MAX_METADATA_BYTES`].
    MetadataTooLarge {
        /// Their size in bytes.
        bytes: usize,
    },
    /// A time to live is more than [`MAX_TTL_SECONDS`].
    TtlOutOfRange {
        /// The TTL in seconds.
        seconds: u32,
    },
    /// A `protobuf` payload is not a serialised `google.protobuf.Any`.
    InvalidProtobufPayload {
        /// Why it could not be read.
        reason: String,
    },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::EmptyGroupName => f.write_str("group name is empty"),
            RuleError::GroupNameTooLong { chars } => write!(
                f,
                "group name is {chars} characters, more than {MAX_GROUP_NAME_CHARS}"
            ),
            RuleError::EmptyEventName => f.write_str("event name is empty"),
            RuleError::MessageTooLarge { size } => write!(
                f,
                "message is {size} bytes, over the {MAX_MESSAGE_BYTES}-byte limit"
            ),
            RuleError::InvalidMetadataKey { key } => write!(
                f,
                "metadata key {:?} is empty or has a character that is not an HTTP token character",
                Short(key)
            ),
            RuleError::MetadataKeyTooLong { bytes } => write!(
                f,
                "metadata key is {bytes} bytes, more than {MAX_METADATA_KEY_BYTES}"
            ),
            RuleError::InvalidMetadataValue { key } => write!(
                f,
                "metadata value of {:?} has a character that is not printable ASCII",
                Short(key)
            ),
            RuleError::MetadataValueTooLong { key, bytes } => write!(
                f,
                "metadata value of {:?} is {bytes} bytes, more than {MAX_METADATA_VALUE_BYTES}",
                Short(key)
            ),
            RuleError::MetadataTooLarge { bytes } => write!(
                f,
                "metadata is {bytes} bytes, over the {MAX_METADATA_BYTES}-byte limit"
            ),
            RuleError::TtlOutOfRange { seconds } => write!(
                f,
                "time to live of {seconds} s is out of range (0 to {MAX_TTL_SECONDS} s)"
            ),
            RuleError::InvalidProtobufPayload { reason } => write!(
                f,
                "protobuf payload is not a serialised google.protobuf.Any: {reason}"
            ),
        }
    }
}

impl std::error::Error for RuleError {}

/// Group names are 1 to [`MAX_GROUP_NAME_CHARS`] characters.
pub fn check_group_name(group: &str) -> Result<(), RuleError> {
    if group.is_empty() {
        return Err(RuleError::EmptyGroupName);
    }
    // Bytes bound characters from above: count only when the bytes could exceed the limit.
    if group.len() > MAX_GROUP_NAME_CHARS {
        let chars = group.chars().count();
        if chars > MAX_GROUP_NAME_CHARS {
            return Err(RuleError::GroupNameTooLong { chars });
        }
    }
    Ok(())
}

/// Event names are not empty.
pub fn check_event_name(event: &str) -> Result<(), RuleError> {
    if event.is_empty() {
        return Err(RuleError::EmptyEventName);
    }
    Ok(())
}

/// A message of `size` bytes — an encoded frame, or a REST body — is within the limit.
pub fn check_message_size(size: usize) -> Result<(), RuleError> {
    if size > MAX_MESSAGE_BYTES {
        return Err(RuleError::MessageTooLarge { size });
    }
    Ok(())
}

/// Metadata follows the service's limits: each key 1 to [`MAX_METADATA_KEY_BYTES`] HTTP token
/// characters, each value at most [`MAX_METADATA_VALUE_BYTES`] of printable ASCII (tab
/// allowed), and all keys and values together at most [`MAX_METADATA_BYTES`].
///
/// Microsoft's emulator allows any ASCII in values; control characters are refused here as
/// well, because metadata travels as HTTP headers (to the event handler, from REST calls),
/// where a line break would end the header or start a forged one.
///
/// ```
/// use webpubsub_protocol::{check_metadata, Metadata, RuleError};
/// assert_eq!(check_metadata(&Metadata::from([("trace-id", "abc")])), Ok(()));
/// assert!(matches!(
///     check_metadata(&Metadata::from([("trace id", "abc")])),
///     Err(RuleError::InvalidMetadataKey { .. })
/// ));
/// ```
pub fn check_metadata(metadata: &Metadata) -> Result<(), RuleError> {
    if metadata.is_empty() {
        return Ok(());
    }
    for (key, value) in metadata.iter() {
        check_metadata_entry(key, value)?;
    }
    let bytes = metadata.total_bytes();
    if bytes > MAX_METADATA_BYTES {
        return Err(RuleError::MetadataTooLarge { bytes });
    }
    Ok(())
}

/// One metadata entry follows the limits of [`check_metadata`] (all but the total).
pub fn check_metadata_entry(key: &str, value: &str) -> Result<(), RuleError> {
    if key.is_empty() || !key.bytes().all(is_token_byte) {
        return Err(RuleError::InvalidMetadataKey {
            key: key.to_owned(),
        });
    }
    if key.len() > MAX_METADATA_KEY_BYTES {
        return Err(RuleError::MetadataKeyTooLong { bytes: key.len() });
    }
    if !value
        .bytes()
        .all(|b| b == b'\t' || (b' '..0x7f).contains(&b))
    {
        return Err(RuleError::InvalidMetadataValue {
            key: key.to_owned(),
        });
    }
    if value.len() > MAX_METADATA_VALUE_BYTES {
        return Err(RuleError::MetadataValueTooLong {
            key: key.to_owned(),
            bytes: value.len(),
        });
    }
    Ok(())
}

/// A `sendToGroup`'s time to live is 0 to [`MAX_TTL_SECONDS`] seconds.
pub fn check_ttl_seconds(seconds: u32) -> Result<(), RuleError> {
    if seconds > MAX_TTL_SECONDS {
        return Err(RuleError::TtlOutOfRange { seconds });
    }
    Ok(())
}

/// A `protobuf` payload ([`Data::Protobuf`](crate::Data::Protobuf)) is a serialised
/// `google.protobuf.Any`. Decoders do not check it (a receiver gets what was sent); a sender
/// checks it, because a protobuf receiver reads the payload as an embedded `Any` message and
/// may refuse the whole frame otherwise.
pub fn check_protobuf_payload(bytes: &[u8]) -> Result<(), RuleError> {
    ProtobufAny::from_bytes(bytes)
        .map(drop)
        .map_err(|e| RuleError::InvalidProtobufPayload {
            reason: e.to_string(),
        })
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A key in an error text: at most 64 characters of it.
struct Short<'a>(&'a str);

impl fmt::Debug for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(64) {
            Some((i, _)) => write!(f, "{:?}…", &self.0[..i]),
            None => write!(f, "{:?}", self.0),
        }
    }
}

/// Whether a query parameter's value is a secret ([`SECRET_QUERY_PARAMS`]).
pub fn is_secret_query_param(name: &str) -> bool {
    SECRET_QUERY_PARAMS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
}

/// A URL or request target with the values of secret query parameters replaced by
/// [`REDACTED`], for logs. Works on the text as it is (percent-encoded or not) and keeps
/// everything else, fragment included.
///
/// ```
/// use webpubsub_protocol::redact_query;
/// assert_eq!(
///     redact_query("/client/hubs/h?access_token=abc&x=1"),
///     "/client/hubs/h?access_token=***&x=1"
/// );
/// ```
pub fn redact_query(url: &str) -> String {
    let Some((base, rest)) = url.split_once('?') else {
        return url.to_owned();
    };
    let (query, fragment) = match rest.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (rest, None),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(base);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((k, _)) if is_secret_query_param(k) => {
                out.push_str(k);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// A JSON frame with the value of its `reconnectionToken` replaced by [`REDACTED`] (the
/// service's `connected` message carries one), for trace logs.
///
/// ```
/// use webpubsub_protocol::redact_frame;
/// let f = r#"{"type":"system","event":"connected","connectionId":"c","reconnectionToken":"s3cr3t"}"#;
/// assert!(!redact_frame(f).contains("s3cr3t"));
/// ```
pub fn redact_frame(frame: &str) -> std::borrow::Cow<'_, str> {
    const KEY: &str = "\"reconnectionToken\":\"";
    match frame.find(KEY) {
        Some(i) => {
            let start = i + KEY.len();
            let end = frame[start..].find('"').map_or(frame.len(), |e| start + e);
            std::borrow::Cow::Owned(format!("{}{REDACTED}{}", &frame[..start], &frame[end..]))
        }
        None => std::borrow::Cow::Borrowed(frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_one_to_1024_characters() {
        assert_eq!(check_group_name(""), Err(RuleError::EmptyGroupName));
        assert_eq!(check_group_name("g"), Ok(()));
        let max = "é".repeat(MAX_GROUP_NAME_CHARS); // 2,048 bytes, 1,024 characters
        assert_eq!(check_group_name(&max), Ok(()));
        assert_eq!(
            check_group_name(&format!("{max}x")),
            Err(RuleError::GroupNameTooLong { chars: 1025 })
        );
    }

    #[test]
    fn messages_up_to_one_mebibyte_pass() {
        assert_eq!(check_message_size(MAX_MESSAGE_BYTES), Ok(()));
        assert_eq!(
            check_message_size(MAX_MESSAGE_BYTES + 1),
            Err(RuleError::MessageTooLarge {
                size: MAX_MESSAGE_BYTES + 1
            })
        );
    }

    #[test]
    fn metadata_keys_are_http_tokens_of_at_most_256_bytes() {
        let one = |k: &str| check_metadata(&Metadata::from([(k, "v")]));
        assert_eq!(one("Trace-Id_1.!#$%&'*+^`|~"), Ok(()));
        for bad in ["", "a b", "a:b", "a\"b", "é", "a/b", "a\nb", "(x)"] {
            assert_eq!(
                one(bad),
                Err(RuleError::InvalidMetadataKey { key: bad.into() }),
                "{bad:?}"
            );
        }
        assert_eq!(one(&"k".repeat(MAX_METADATA_KEY_BYTES)), Ok(()));
        assert_eq!(
            one(&"k".repeat(MAX_METADATA_KEY_BYTES + 1)),
            Err(RuleError::MetadataKeyTooLong { bytes: 257 })
        );
    }

    #[test]
    fn metadata_values_are_printable_ascii_of_at_most_1024_bytes() {
        let one = |v: &str| check_metadata(&Metadata::from([("k", v)]));
        assert_eq!(one(""), Ok(()));
        assert_eq!(one("any ASCII: {\"x\"}\t~"), Ok(()));
        for bad in ["é", "line\nbreak", "cr\r", "\u{0}", "\u{7f}"] {
            assert_eq!(
                one(bad),
                Err(RuleError::InvalidMetadataValue { key: "k".into() }),
                "{bad:?}"
            );
        }
        assert_eq!(one(&"v".repeat(MAX_METADATA_VALUE_BYTES)), Ok(()));
        assert_eq!(
            one(&"v".repeat(MAX_METADATA_VALUE_BYTES + 1)),
            Err(RuleError::MetadataValueTooLong {
                key: "k".into(),
                bytes: 1025
            })
        );
    }

    #[test]
    fn metadata_is_at_most_8_kib_in_all() {
        // Eight entries of 1 + 1023 bytes: exactly 8 KiB.
        let full: Metadata = (0..8).map(|i| (i.to_string(), "v".repeat(1023))).collect();
        assert_eq!(full.total_bytes(), MAX_METADATA_BYTES);
        assert_eq!(check_metadata(&full), Ok(()));
        let over = full.with("x", "");
        assert_eq!(
            check_metadata(&over),
            Err(RuleError::MetadataTooLarge { bytes: 8193 })
        );
        assert_eq!(check_metadata(&Metadata::new()), Ok(()));
    }

    #[test]
    fn ttl_is_zero_to_300_seconds() {
        assert_eq!(check_ttl_seconds(0), Ok(()));
        assert_eq!(check_ttl_seconds(300), Ok(()));
        assert_eq!(
            check_ttl_seconds(301),
            Err(RuleError::TtlOutOfRange { seconds: 301 })
        );
    }

    #[test]
    fn protobuf_payloads_are_serialised_anys() {
        let any = ProtobufAny::new("type.googleapis.com/x.Y", vec![8, 1]);
        assert_eq!(check_protobuf_payload(&any.to_bytes()), Ok(()));
        assert_eq!(check_protobuf_payload(&[]), Ok(()), "the empty Any");
        assert!(matches!(
            check_protobuf_payload(&[1, 2, 3]),
            Err(RuleError::InvalidProtobufPayload { .. })
        ));
    }

    #[test]
    fn error_texts_shorten_long_keys() {
        let e = RuleError::InvalidMetadataKey {
            key: "x ".repeat(1000),
        };
        assert!(e.to_string().len() < 200, "{e}");
    }

    #[test]
    fn event_names_are_not_empty() {
        assert_eq!(check_event_name(""), Err(RuleError::EmptyEventName));
        assert_eq!(check_event_name("e"), Ok(()));
    }

    #[test]
    fn secret_query_values_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_query(
                "/client/hubs/h?access_token=abc.def&awps_connection_id=c&awps_reconnection_token=t#f"
            ),
            "/client/hubs/h?access_token=***&awps_connection_id=c&awps_reconnection_token=***#f"
        );
        assert_eq!(
            redact_query("/x?Access_Token=1&AccessKey=2"),
            "/x?Access_Token=***&AccessKey=***"
        );
        assert_eq!(
            redact_query("https://app.azurewebsites.net/runtime/webhooks/webpubsub?code=k3y"),
            "https://app.azurewebsites.net/runtime/webhooks/webpubsub?code=***"
        );
        assert_eq!(redact_query("/x"), "/x");
        assert_eq!(redact_query("/x?flag&token"), "/x?flag&token");
    }

    #[test]
    fn the_reconnection_token_of_a_frame_is_redacted() {
        let f =
            r#"{"type":"system","event":"connected","reconnectionToken":"abc","connectionId":"c"}"#;
        assert_eq!(
            redact_frame(f),
            r#"{"type":"system","event":"connected","reconnectionToken":"***","connectionId":"c"}"#
        );
        let cut = r#"{"reconnectionToken":"abc"#;
        assert_eq!(redact_frame(cut), r#"{"reconnectionToken":"***"#);
        assert_eq!(redact_frame("{}"), "{}");
    }
}
