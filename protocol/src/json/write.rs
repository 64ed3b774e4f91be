//! Writing JSON text by hand: the encoders' building blocks, byte-identical to serde_json.

/// Writes `s` as a JSON string literal, byte for byte as serde_json would: `"` and `\\`
/// escaped, `\b \f \n \r \t` for those controls, `\u00xx` (lower-case hex) for the other
/// control characters, everything else (DEL and non-ASCII included) as is. Runs that need
/// no escaping are copied in one go.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    loop {
        let at = start + clean_run(&bytes[start..]);
        // The byte at `at` is ASCII, so `start..at` ends on a character boundary.
        out.push_str(&s[start..at]);
        let Some(&b) = bytes.get(at) else { break };
        start = at + 1;
        let escape = ESCAPE[b as usize];
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
    out.push('"');
}

/// The length of the leading run of `b` that needs no escaping: eight bytes per step (the
/// first hit of a word is exact), the last few one at a time.
fn clean_run(b: &[u8]) -> usize {
    let chunks = b.chunks_exact(8);
    let tail = b.len() - chunks.remainder().len();
    for (n, chunk) in chunks.enumerate() {
        let hits = escape_hits(<[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes));
        if hits != 0 {
            return n * 8 + (hits.trailing_zeros() / 8) as usize;
        }
    }
    tail + b[tail..]
        .iter()
        .position(|&c| ESCAPE[c as usize] != 0)
        .unwrap_or(b.len() - tail)
}

/// The high bit of each byte of `w` (little-endian) that is a control character, `"` or
/// `\\`: exact for the lowest such byte (a borrow only runs upwards), so the first hit is
/// where the run ends; bytes above it may show false hits.
fn escape_hits(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * b'\\' as u64);
    let backslash = b.wrapping_sub(ONES) & !b;
    (control | quote | backslash) & HIGH
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
        let mut rng = webpubsub_testkit::rng::Rng::new(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2_000 {
            let x = rng.next_u64();
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
                // Clean bytes below `b`, and above it each byte value in turn (a false hit
                // there must not move the first one).
                for above in [b'a', 0, b'"', b'\\', 0x1f, 0x20, 0x7f, 0x80, 0xff] {
                    let mut word = [b'a'; 8];
                    word[at] = b;
                    for w in &mut word[at + 1..] {
                        *w = above;
                    }
                    let bytes = word.repeat(2);
                    let want = if ESCAPE[b as usize] != 0 {
                        at
                    } else {
                        (at + 1..16)
                            .find(|&i| ESCAPE[bytes[i] as usize] != 0)
                            .unwrap_or(16)
                    };
                    assert_eq!(
                        clean_run(&bytes),
                        want,
                        "byte {b:#x} at {at}, {above:#x} above"
                    );
                }
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
}
