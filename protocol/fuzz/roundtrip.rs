//! The round-trip equality shared by the cargo-fuzz targets and `tests/codec_fuzz.rs`
//! (both include this file with `#[path]`).
//!
//! Messages must be equal, with one exception while it lasts: serde_json's default float
//! parser is "best effort" and may land a unit or two in the last place (ULP) away from
//! the nearest double, so a JSON payload's float can change on each decode. The
//! `float_roundtrip` feature of serde_json makes the parser exact; as soon as the crate
//! enables it, [`float_parsing_is_exact`] turns true and this comparison becomes strict.
#![allow(dead_code)]

use serde_json::Value;
use std::sync::OnceLock;
use webpubsub_protocol::{ClientMessage, Data, ServiceMessage};

/// Whether serde_json parses floats to the nearest double (its `float_roundtrip` feature).
pub fn float_parsing_is_exact() -> bool {
    static EXACT: OnceLock<bool> = OnceLock::new();
    *EXACT.get_or_init(|| {
        // Texts the best-effort parser is known to read 1 ULP off; `str::parse` is exact.
        ["-1.956256486933265e+288", "666601.5e300"]
            .iter()
            .all(|text| serde_json::from_str::<f64>(text).ok() == text.parse::<f64>().ok())
    })
}

/// Equality of service messages, up to the float caveat above.
pub fn same_service(a: &ServiceMessage, b: &ServiceMessage) -> bool {
    if a == b {
        return true;
    }
    if float_parsing_is_exact() {
        return false;
    }
    let (mut a, mut b) = (a.clone(), b.clone());
    match (service_payload(&mut a), service_payload(&mut b)) {
        (Some(x), Some(y)) if json_close(x, y) => {
            *x = Value::Null;
            *y = Value::Null;
            a == b
        }
        _ => false,
    }
}

/// Equality of client messages, up to the float caveat above.
pub fn same_client(a: &ClientMessage, b: &ClientMessage) -> bool {
    if a == b {
        return true;
    }
    if float_parsing_is_exact() {
        return false;
    }
    let (mut a, mut b) = (a.clone(), b.clone());
    match (client_payload(&mut a), client_payload(&mut b)) {
        (Some(x), Some(y)) if json_close(x, y) => {
            *x = Value::Null;
            *y = Value::Null;
            a == b
        }
        _ => false,
    }
}

fn service_payload(msg: &mut ServiceMessage) -> Option<&mut Value> {
    match msg {
        ServiceMessage::GroupMessage { data, .. } | ServiceMessage::ServerMessage { data, .. } => {
            json_of(data)
        }
        ServiceMessage::InvokeResponse {
            data: Some(data), ..
        } => json_of(data),
        _ => None,
    }
}

fn client_payload(msg: &mut ClientMessage) -> Option<&mut Value> {
    match msg {
        ClientMessage::SendToGroup { data, .. } | ClientMessage::Event { data, .. } => {
            json_of(data)
        }
        ClientMessage::Invoke {
            data: Some(data), ..
        } => json_of(data),
        _ => None,
    }
}

fn json_of(data: &mut Data) -> Option<&mut Value> {
    match data {
        Data::Json(v) => Some(v),
        _ => None,
    }
}

/// How far apart the best-effort parser has been seen to land: 2 ULP; allow some margin.
const MAX_ULPS: u64 = 4;

/// Structural equality in which two floats may differ by a few ULP.
fn json_close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x == y || (x.signum() == y.signum() && x.to_bits().abs_diff(y.to_bits()) <= MAX_ULPS)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_close(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}
