//! Payloads and their data types (PROTOCOL.md §5).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::value::RawValue;

/// How a payload is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// UTF-8 text, sent as a JSON string.
    Text,
    /// Any JSON value, embedded as is.
    Json,
    /// Bytes, sent as standard base64.
    Binary,
    /// Protocol Buffers bytes, sent as standard base64.
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
    /// Protocol Buffers bytes (`dataType: "protobuf"`).
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

    /// Appends `"dataType":"…","data":…` to a JSON object being written.
    pub(crate) fn write_fields(&self, out: &mut String) {
        out.push_str(",\"dataType\":\"");
        out.push_str(self.data_type().as_str());
        out.push_str("\",\"data\":");
        match self {
            Data::Text(s) => push_json_str(out, s),
            Data::Json(v) => push_json(out, v),
            Data::Binary(b) | Data::Protobuf(b) => {
                out.push('"');
                BASE64.encode_string(b, out);
                out.push('"');
            }
        }
    }

    /// Decodes `data` according to `data_type`. `Ok(None)` means the data type is unknown
    /// and the message is to be skipped.
    pub(crate) fn decode(
        message: &'static str,
        data_type: Option<&RawValue>,
        data: Option<&RawValue>,
    ) -> Result<Option<Data>, super::ProtocolError> {
        match data_type {
            None => Data::decode_named(message, None, data),
            Some(raw) => {
                let name: std::borrow::Cow<'_, str> = super::raw::field(message, "dataType", raw)?;
                Data::decode_named(message, Some(&name), data)
            }
        }
    }

    /// [`Data::decode`] with the `dataType` already read as a string.
    pub(crate) fn decode_named(
        message: &'static str,
        data_type: Option<&str>,
        data: Option<&RawValue>,
    ) -> Result<Option<Data>, super::ProtocolError> {
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
            return Err(super::ProtocolError::MissingField {
                message,
                field: "data",
            });
        };
        Ok(Some(match ty {
            DataType::Text => Data::Text(json_string(message, raw)?.into_owned()),
            DataType::Json => Data::Json(super::raw::field(message, "data", raw)?),
            DataType::Binary | DataType::Protobuf => {
                let text = json_string(message, raw)?;
                let bytes = BASE64.decode(text.as_bytes()).map_err(|e| {
                    super::ProtocolError::InvalidField {
                        message,
                        field: "data",
                        reason: format!("invalid base64: {e}"),
                    }
                })?;
                if ty == DataType::Binary {
                    Data::Binary(bytes)
                } else {
                    Data::Protobuf(bytes)
                }
            }
        }))
    }
}

/// The string a raw `data` value holds. A JSON string without a backslash is its own content
/// between the quotes (the raw value was validated: no control characters, and its only
/// unescaped quote is the closing one), so it is borrowed without a second parse.
fn json_string<'a>(
    message: &'static str,
    raw: &'a RawValue,
) -> Result<std::borrow::Cow<'a, str>, super::ProtocolError> {
    let s = raw.get();
    if s.len() >= 2 && s.starts_with('"') && !s.as_bytes().contains(&b'\\') {
        return Ok(std::borrow::Cow::Borrowed(&s[1..s.len() - 1]));
    }
    super::raw::field::<String>(message, "data", raw).map(std::borrow::Cow::Owned)
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

/// Writes `s` as a JSON string literal, byte for byte as serde_json would: `"` and `\\`
/// escaped, `\b \f \n \r \t` for those controls, `\u00xx` (lower-case hex) for the other
/// control characters, everything else (DEL and non-ASCII included) as is. Runs that need
/// no escaping are copied in one go.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            if !any_byte_needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let (at, b) = (i, bytes[i]);
        i += 1;
        let escape = ESCAPE[b as usize];
        if escape == 0 {
            continue;
        }
        // `b` is ASCII, so `start..at` ends on a character boundary.
        out.push_str(&s[start..at]);
        start = i;
        if escape == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push('\\');
            out.push(escape as char);
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Whether any of the 8 bytes of `w` is a control character, `"` or `\\` (exact: the
/// zero-byte tests below have no false positives or negatives for the presence question).
fn any_byte_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * b'\\' as u64);
    let backslash = b.wrapping_sub(ONES) & !b;
    (control | quote | backslash) & HIGH != 0
}

/// Writes `n` in decimal, without the formatting machinery of `write!`.
pub(crate) fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &buf[i..] {
        out.push(d as char);
    }
}

/// How each byte is written inside a JSON string: 0 as is, `u` as `\u00xx`, else `\` and the
/// byte given (serde_json's table).
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Writes any serialisable value as JSON.
pub(crate) fn push_json<T: serde::Serialize + ?Sized>(out: &mut String, v: &T) {
    // Serialising a `str` or a `Value` into memory cannot fail, and serde_json writes
    // valid UTF-8 only.
    let bytes = serde_json::to_vec(v).expect("serialising JSON into memory");
    out.push_str(std::str::from_utf8(&bytes).expect("serde_json writes UTF-8"));
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
    fn strings_are_escaped_only_when_needed() {
        let mut out = String::new();
        push_json_str(&mut out, "plain");
        push_json_str(&mut out, "q\"uote\\\n\u{1}é");
        assert_eq!(out, r#""plain""q\"uote\\\n\u0001é""#);
    }

    #[test]
    fn string_escaping_is_byte_identical_to_serde_json() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "\"".into(),
            "\\".into(),
            "a\"b\\c\"".into(),
            "\u{7f}\u{80}é€😀\u{10ffff}\u{2028}\u{2029}".into(),
            "</script>\u{feff}".into(),
        ];
        // Every ASCII byte alone, between text, and at the ends.
        for b in 0u8..0x80 {
            let c = b as char;
            cases.push(c.to_string());
            cases.push(format!("x{c}é{c}{c}😀"));
        }
        // Pseudo-random strings over a mix of controls, specials and multi-byte characters.
        let alphabet: Vec<char> =
            "\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f} \"\\/aZ~\u{7f}é€😀\u{fffd}"
                .chars()
                .collect();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((x >> (i % 50)) as usize + i * 7) % alphabet.len()])
                .collect();
            cases.push(s);
        }
        // Each special byte at each offset of a word-sized scan, between multi-byte text.
        for b in (0u8..0x20).chain([b'"', b'\\', 0x7f]) {
            for at in 0..17 {
                let mut s: String = "ab€d".repeat(5).chars().take(17).collect();
                s.insert(
                    s.char_indices().nth(at).map_or(s.len(), |(i, _)| i),
                    b as char,
                );
                cases.push(s);
            }
        }
        for s in &cases {
            let mut out = String::from("prefix");
            push_json_str(&mut out, s);
            assert_eq!(
                &out["prefix".len()..],
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn the_word_scan_agrees_with_the_escape_table_for_every_byte_and_position() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut word = [b'a'; 8];
                word[at] = b;
                assert_eq!(
                    any_byte_needs_escape(u64::from_le_bytes(word)),
                    ESCAPE[b as usize] != 0,
                    "byte {b:#x} at {at}"
                );
            }
        }
    }

    #[test]
    fn integers_are_written_as_display_writes_them() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            12345,
            (1 << 53) + 1,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = String::from("x");
            push_u64(&mut out, n);
            assert_eq!(out, format!("x{n}"));
        }
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
