//! The protocol crate's rules (group names, the 1 MB limit) as the ack errors the emulator
//! answers with, and small text helpers.
//!
//! The rules themselves live in `webpubsub_protocol`, so that anything the client lets
//! through, the emulator accepts.

use webpubsub_protocol::{check_group_name, check_message_size, AckError, RuleError};

/// Ack error name for a request the emulator refuses as invalid: a group name outside
/// 1..=1024 characters, or a frame over 1 MB.
pub const BAD_REQUEST: &str = "BadRequest";

fn bad_request(e: RuleError) -> AckError {
    AckError::new(BAD_REQUEST, e.to_string())
}

/// A group name the service accepts.
pub(crate) fn group(name: &str) -> Result<(), AckError> {
    check_group_name(name).map_err(bad_request)
}

/// A received request frame of `len` bytes is within the limit (the client checks the
/// same frame before it sends it).
pub(crate) fn frame_size(len: usize) -> Result<(), AckError> {
    check_message_size(len).map_err(bad_request)
}

/// The ack error for a request that was refused before it ran.
pub(crate) fn forbidden(what: &str) -> AckError {
    AckError::new(AckError::FORBIDDEN, what)
}

/// At most `max` bytes of `s`, cut at a character boundary (close reasons are limited).
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use webpubsub_protocol::MAX_MESSAGE_BYTES;

    #[test]
    fn refusals_are_bad_request_acks() {
        assert_eq!(group("").unwrap_err().name, BAD_REQUEST);
        assert!(group("g").is_ok());
        assert!(frame_size(MAX_MESSAGE_BYTES).is_ok());
        assert_eq!(
            frame_size(MAX_MESSAGE_BYTES + 1).unwrap_err().name,
            BAD_REQUEST
        );
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
