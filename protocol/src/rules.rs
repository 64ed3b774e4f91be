//! The rules of the wire that both sides apply: name lengths, the message size limit, and
//! which values are secrets that no log line may show.
//!
//! One definition each, so that anything a client lets through, the service (or the
//! emulator) accepts, and the same secrets are hidden everywhere with the same marker.

use std::fmt;

/// The largest message the service accepts, in bytes: the encoded WebSocket frame for
/// client requests, the request body for REST sends (PROTOCOL.md §5).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// The longest group name the service accepts, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 1024;

/// What stands in for a secret in logs, `Debug` output and error texts.
pub const REDACTED: &str = "***";

/// Query parameters whose values are secrets: the access token, the reconnection token,
/// and the names the server SDKs use for keys and tokens. Compared ignoring ASCII case.
pub const SECRET_QUERY_PARAMS: [&str; 4] = [
    "access_token",
    "awps_reconnection_token",
    "token",
    "accesskey",
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
