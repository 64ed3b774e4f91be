//! Limits the emulator enforces on requests, and small text helpers.

use webpubsub_protocol::{AckError, Data, MAX_GROUP_NAME_CHARS, MAX_MESSAGE_BYTES};

/// Ack error name for a request the emulator refuses as invalid: a group name outside
/// 1..=1024 characters, or a payload over 1 MB.
pub const BAD_REQUEST: &str = "BadRequest";

pub(crate) fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

pub(crate) fn check_group(group: &str) -> Result<(), AckError> {
    let n = group.chars().count();
    if n == 0 || n > MAX_GROUP_NAME_CHARS {
        return Err(AckError::new(
            BAD_REQUEST,
            format!("Group name must be 1 to {MAX_GROUP_NAME_CHARS} characters, not {n}"),
        ));
    }
    Ok(())
}

pub(crate) fn check_size(data: &Data) -> Result<(), AckError> {
    let n = match data {
        Data::Text(s) => s.len(),
        Data::Binary(b) | Data::Protobuf(b) => b.len(),
        Data::Json(v) => serde_json::to_string(v).map(|s| s.len()).unwrap_or(0),
    };
    if n > MAX_MESSAGE_BYTES {
        return Err(AckError::new(
            BAD_REQUEST,
            format!("Message payload is {n} bytes, over the {MAX_MESSAGE_BYTES}-byte limit"),
        ));
    }
    Ok(())
}

/// Hides the reconnection token of a `connected` frame in trace logs.
pub(crate) fn redact_frame(f: &str) -> std::borrow::Cow<'_, str> {
    match f.find("\"reconnectionToken\":\"") {
        Some(i) => {
            let start = i + "\"reconnectionToken\":\"".len();
            let end = f[start..].find('"').map(|e| start + e).unwrap_or(f.len());
            std::borrow::Cow::Owned(format!("{}***{}", &f[..start], &f[end..]))
        }
        None => std::borrow::Cow::Borrowed(f),
    }
}
