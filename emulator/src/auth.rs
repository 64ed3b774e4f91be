//! HS256 JSON Web Tokens, random ids and tokens, and the comparison of secrets.
//!
//! The JWT framing is small enough to write here: base64url (no padding) of a JSON header,
//! of the JSON claims, and of the HMAC-SHA256 of both with the access key's bytes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// Clock skew tolerated on `exp`.
pub(crate) const EXP_SKEW: Duration = Duration::from_secs(5);

/// Why a token was refused. Never contains the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthError {
    Missing,
    Malformed(&'static str),
    UnsupportedAlgorithm(String),
    BadSignature,
    Expired,
    WrongAudience { expected: String, found: String },
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => {
                f.write_str("no access token (query `access_token` or `Authorization: Bearer`)")
            }
            AuthError::Malformed(why) => write!(f, "malformed access token: {why}"),
            AuthError::UnsupportedAlgorithm(alg) => {
                write!(f, "unsupported token algorithm `{alg}` (only HS256)")
            }
            AuthError::BadSignature => f.write_str("invalid token signature"),
            AuthError::Expired => f.write_str("token expired"),
            AuthError::WrongAudience { expected, found } => {
                write!(f, "token audience `{found}` does not match `{expected}`")
            }
        }
    }
}

/// Signs `claims` as an HS256 JWT with `key`.
pub(crate) fn sign(claims: &Map<String, Value>, key: &str) -> String {
    let header = B64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    // A map of JSON values always serialises.
    let body = B64URL.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{body}");
    let mut mac = mac(key);
    mac.update(signing_input.as_bytes());
    let sig = B64URL.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

fn mac(key: &str) -> HmacSha256 {
    match HmacSha256::new_from_slice(key.as_bytes()) {
        Ok(mac) => mac,
        // HMAC is defined for keys of every length (long ones are hashed first).
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// Checks the signature and `exp` of a token and returns its claims. `aud` is left to the
/// caller (see [`audience_matches`]).
pub(crate) fn verify(token: &str, key: &str) -> Result<Map<String, Value>, AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not three dot-separated parts"));
    };
    let header: Map<String, Value> = decode_json(h).ok_or(AuthError::Malformed("header"))?;
    match header.get("alg").and_then(Value::as_str) {
        Some("HS256") => {}
        Some(other) => return Err(AuthError::UnsupportedAlgorithm(other.to_owned())),
        None => return Err(AuthError::Malformed("header has no `alg`")),
    }
    let sig = B64URL
        .decode(s.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed("signature is not base64url"))?;
    let mut mac = mac(key);
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(c.as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&sig)
        .map_err(|_| AuthError::BadSignature)?;
    let claims: Map<String, Value> = decode_json(c).ok_or(AuthError::Malformed("claims"))?;
    if let Some(exp) = claims.get("exp") {
        let exp = exp
            .as_f64()
            .ok_or(AuthError::Malformed("`exp` is not a number"))?;
        if exp + EXP_SKEW.as_secs_f64() < now_secs() as f64 {
            return Err(AuthError::Expired);
        }
    }
    Ok(claims)
}

fn decode_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = B64URL.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Normalises a URL for audience comparison: ws→http, wss→https, no trailing slash,
/// ASCII lower case.
fn normalise(url: &str) -> String {
    let lower = url.trim().to_ascii_lowercase();
    let lower = if let Some(rest) = lower.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = lower.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        lower
    };
    lower.trim_end_matches('/').to_owned()
}

/// Whether the token's `aud` claim (a string, or an array of strings) equals one of the
/// accepted audiences, ignoring ASCII case, a trailing slash, and ws/http scheme spelling.
pub(crate) fn audience_matches(
    claims: &Map<String, Value>,
    accepted: &[String],
) -> Result<(), AuthError> {
    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let accepted_norm: Vec<String> = accepted.iter().map(|a| normalise(a)).collect();
    if auds
        .iter()
        .any(|aud| accepted_norm.iter().any(|a| *a == normalise(aud)))
    {
        Ok(())
    } else {
        Err(AuthError::WrongAudience {
            expected: accepted.first().cloned().unwrap_or_default(),
            found: auds.first().map(|s| s.to_string()).unwrap_or_default(),
        })
    }
}

/// A claim that may be one string or an array of strings.
pub(crate) fn string_list(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// `n` random bytes as base64url text.
pub(crate) fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    if getrandom::fill(&mut buf).is_err() {
        // No OS randomness: fall back to the clock and a counter. Ids stay unique, which is
        // all the emulator needs; it is a test tool.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(32);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed.rotate_left((i % 64) as u32) >> 3) as u8 ^ i as u8;
        }
    }
    B64URL.encode(buf)
}

/// Compares two secrets in time independent of where they differ.
pub(crate) fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let c = claims(json!({"aud":"http://h/client/hubs/a","exp": now_secs() + 60,"sub":"u"}));
        let t = sign(&c, "key");
        assert_eq!(verify(&t, "key").unwrap(), c);
        assert_eq!(verify(&t, "other"), Err(AuthError::BadSignature));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64URL.encode(br#"{"aud":"x","sub":"admin"}"#);
        parts[1] = &forged;
        assert_eq!(
            verify(&parts.join("."), "key"),
            Err(AuthError::BadSignature)
        );
        assert!(matches!(verify("abc", "key"), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn expired_tokens_are_refused_beyond_the_skew() {
        let old = sign(&claims(json!({"exp": now_secs() - 60})), "k");
        assert_eq!(verify(&old, "k"), Err(AuthError::Expired));
        let recent = sign(&claims(json!({"exp": now_secs() - 1})), "k");
        assert!(verify(&recent, "k").is_ok());
    }

    #[test]
    fn audience_ignores_case_trailing_slash_and_ws_scheme() {
        let c = claims(json!({"aud":"HTTP://127.0.0.1:80/client/hubs/Chat/"}));
        assert!(audience_matches(&c, &["ws://127.0.0.1:80/client/hubs/chat".into()]).is_ok());
        assert!(audience_matches(&c, &["http://127.0.0.1:80/client/hubs/other".into()]).is_err());
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "ab"));
    }
}
