//! Event requests as the service sends them: CloudEvents over HTTP in binary mode
//! (UPSTREAM.md §2), the validation request (§5), and the signature. Pure.

use super::config::SystemEvent;
use super::outcome::ConnectRequest;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};
use webpubsub_protocol::{is_secret_query_param, Data, Metadata};

/// The prefix of the headers that carry message metadata, both ways (PROTOCOL.md §11), as
/// Microsoft's emulator names them; the key follows in lower case.
pub(crate) const METADATA_HEADER_PREFIX: &str = "x-webpubsub-metadata-";

/// Who the service is, as event handlers see it.
#[derive(Clone)]
pub(crate) struct Service {
    /// `WebHook-Request-Origin`: the host name, no scheme, no port.
    pub host: String,
    /// The port clients reach the service on, for `WebHook-Allowed-Origin: host:port`.
    pub port: Option<u16>,
    /// The access keys that sign `ce-signature` (a secret).
    pub keys: Vec<String>,
}

impl Service {
    /// From the emulator's endpoint (`http://127.0.0.1:8080`).
    pub fn from_endpoint(endpoint: &str, key: &str) -> Service {
        let (host, port) = match url::Url::parse(endpoint) {
            Ok(u) => (
                u.host_str().unwrap_or("localhost").to_owned(),
                u.port_or_known_default(),
            ),
            Err(_) => (endpoint.to_owned(), None),
        };
        Service {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            keys: vec![key.to_owned()],
        }
    }
}

/// The connection an event is about, as of the moment it is sent.
pub(crate) struct Identity<'a> {
    pub hub: &'a str,
    pub connection_id: &'a str,
    pub user_id: Option<&'a str>,
    pub subprotocol: Option<&'a str>,
    pub state: Option<&'a str>,
}

/// One event's request.
pub(crate) enum Event<'a> {
    Connect(&'a ConnectRequest),
    Connected,
    Disconnected(&'a str),
    User {
        name: &'a str,
        data: Option<&'a Data>,
        /// The client's metadata: `x-webpubsub-metadata-<key>` headers.
        metadata: &'a Metadata,
    },
}

impl Event<'_> {
    /// `ce-eventName` and the value of `{event}`.
    pub fn name(&self) -> &str {
        match self {
            Event::Connect(_) => SystemEvent::Connect.as_str(),
            Event::Connected => SystemEvent::Connected.as_str(),
            Event::Disconnected(_) => SystemEvent::Disconnected.as_str(),
            Event::User { name, .. } => name,
        }
    }

    fn ce_type(&self) -> String {
        match self {
            Event::User { name, .. } => format!("azure.webpubsub.user.{name}"),
            other => format!("azure.webpubsub.sys.{}", other.name()),
        }
    }
}

/// An HTTP request to send: method, URL, headers (values may be UTF-8 beyond ASCII, as
/// `ce-userId` can be; names are fixed but for the metadata headers) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outbound {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(Cow<'static, str>, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Post,
    Options,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Options => "OPTIONS",
        }
    }
}

/// `POST url` for `event` of the connection `who`; `id` is the event's `ce-id`.
pub(crate) fn event_request(
    service: &Service,
    who: &Identity<'_>,
    event: &Event<'_>,
    id: u64,
    now: SystemTime,
    url: String,
) -> Outbound {
    let mut headers = Headers::default();
    headers.push("ce-specversion", "1.0".into());
    headers.push("ce-awpsversion", "1.0".into());
    headers.push("ce-type", event.ce_type());
    headers.push(
        "ce-source",
        format!("/hubs/{}/client/{}", who.hub, who.connection_id),
    );
    headers.push("ce-id", id.to_string());
    headers.push("ce-time", rfc3339(now));
    headers.push("ce-hub", who.hub.to_ascii_lowercase());
    headers.push("ce-connectionId", who.connection_id.to_owned());
    if let Some(u) = who.user_id {
        headers.push("ce-userId", u.to_owned());
    }
    headers.push("ce-eventName", event.name().to_owned());
    if let Some(p) = who.subprotocol.filter(|p| !p.is_empty()) {
        headers.push("ce-subprotocol", p.to_owned());
    }
    if let Some(s) = who.state.filter(|s| !s.is_empty()) {
        headers.push("ce-connectionState", s.to_owned());
    }
    headers.push("ce-signature", signature(&service.keys, who.connection_id));
    headers.push("WebHook-Request-Origin", service.host.clone());
    if let Event::User { metadata, .. } = event {
        metadata_headers(metadata, &mut headers.0);
    }
    let (content_type, body) = match event {
        Event::Connect(req) => (JSON_UTF8, connect_body(req)),
        // Express drops a system event whose body is not JSON: `{}` rather than nothing.
        Event::Connected => (JSON_UTF8, b"{}".to_vec()),
        Event::Disconnected(reason) => (
            JSON_UTF8,
            serde_json::to_vec(&serde_json::json!({ "reason": reason })).unwrap_or_default(),
        ),
        Event::User { data, .. } => user_body(*data),
    };
    headers.push("Content-Type", content_type.to_owned());
    Outbound {
        method: Method::Post,
        url,
        headers: headers.0,
        body,
    }
}

#[derive(Default)]
struct Headers(Vec<(Cow<'static, str>, String)>);

impl Headers {
    fn push(&mut self, name: &'static str, value: String) {
        self.0.push((Cow::Borrowed(name), value));
    }
}

/// `x-webpubsub-metadata-<lower-case key>: <value>` for each entry. Header names ignore
/// case, so keys that differ only in case become one header: the last in key order wins,
/// as Microsoft's emulator collapses them.
fn metadata_headers(metadata: &Metadata, out: &mut Vec<(Cow<'static, str>, String)>) {
    let first = out.len();
    for (key, value) in metadata.iter() {
        let name = format!("{METADATA_HEADER_PREFIX}{}", key.to_ascii_lowercase());
        match out[first..].iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value.to_owned(),
            None => out.push((Cow::Owned(name), value.to_owned())),
        }
    }
}

/// `OPTIONS url` of abuse protection.
pub(crate) fn validation_request(service: &Service, url: String) -> Outbound {
    Outbound {
        method: Method::Options,
        url,
        headers: vec![
            ("WebHook-Request-Origin".into(), service.host.clone()),
            ("ce-awpsversion".into(), "1.0".into()),
        ],
        body: Vec::new(),
    }
}

const JSON_UTF8: &str = "application/json; charset=utf-8";

fn user_body(data: Option<&Data>) -> (&'static str, Vec<u8>) {
    match data {
        None => ("text/plain; charset=utf-8", Vec::new()),
        Some(Data::Text(t)) => ("text/plain; charset=utf-8", t.as_bytes().to_vec()),
        Some(Data::Json(v)) => (
            "application/json",
            serde_json::to_vec(v).unwrap_or_default(),
        ),
        Some(Data::Binary(b)) | Some(Data::Protobuf(b)) => ("application/octet-stream", b.clone()),
    }
}

/// `{"claims":…,"query":…,"headers":…,"subprotocols":…,"clientCertificates":[]}`, every
/// value a string array, without the token (query or `Authorization`).
fn connect_body(req: &ConnectRequest) -> Vec<u8> {
    let mut claims = Map::new();
    for (name, value) in &req.claims {
        let values: Vec<Value> = match value {
            Value::Null => continue,
            Value::Array(items) => items.iter().map(claim_text).collect(),
            other => vec![claim_text(other)],
        };
        claims.insert(name.clone(), Value::Array(values));
    }
    let query = grouped(
        req.query.iter().filter(|(k, _)| !is_secret_query_param(k)),
        false,
    );
    let headers = grouped(
        req.headers.iter().filter(|(k, _)| {
            !k.eq_ignore_ascii_case("authorization")
                && !k.eq_ignore_ascii_case("proxy-authorization")
        }),
        true,
    );
    let body = serde_json::json!({
        "claims": claims,
        "query": query,
        "headers": headers,
        "subprotocols": req.subprotocols,
        "clientCertificates": [],
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

fn claim_text(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    }
}

/// Name → every value, in order; header names group ignoring ASCII case (the first
/// spelling names the group), query names exactly.
fn grouped<'a>(
    pairs: impl Iterator<Item = &'a (String, String)>,
    ignore_case: bool,
) -> Map<String, Value> {
    let mut order: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, v) in pairs {
        let slot = order.iter_mut().find(|(name, _)| {
            if ignore_case {
                name.eq_ignore_ascii_case(k)
            } else {
                name == k
            }
        });
        match slot {
            Some((_, values)) => values.push(Value::String(v.clone())),
            None => order.push((k.clone(), vec![Value::String(v.clone())])),
        }
    }
    order
        .into_iter()
        .map(|(k, v)| (k, Value::Array(v)))
        .collect()
}

/// `sha256=<hex HMAC-SHA256(key, connectionId)>` for each key, comma-separated.
pub(crate) fn signature(keys: &[String], connection_id: &str) -> String {
    keys.iter()
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(connection_id.as_bytes());
            let digest = mac.finalize().into_bytes();
            let mut s = String::with_capacity(7 + 64);
            s.push_str("sha256=");
            for b in digest {
                s.push_str(&format!("{b:02x}"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `2026-12-01T09:30:05.123Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn service() -> Service {
        Service {
            host: "127.0.0.1".into(),
            port: Some(8080),
            keys: vec!["key".into()],
        }
    }

    fn header<'a>(o: &'a Outbound, name: &str) -> Option<&'a str> {
        o.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_signature_matches_the_sdk_test_vector() {
        assert_eq!(
            signature(
                &["7aab239577fd4f24bc919802fb629f5f".into()],
                "0f9c97a2f0bf4706afe87a14e0797b11"
            ),
            "sha256=7767effcb3946f3e1de039df4b986ef02c110b1469d02c0a06f41b3b727ab561"
        );
        let two = signature(&["a".into(), "b".into()], "c");
        assert_eq!(two.split(',').count(), 2);
        assert!(two
            .split(',')
            .all(|s| s.starts_with("sha256=") && s.len() == 71));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_000 + 3_723_004); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T01:02:03.004Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799); // last second of 2099
        assert_eq!(rfc3339(t), "2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn a_user_event_carries_every_header() {
        let who = Identity {
            hub: "Chat",
            connection_id: "c1",
            user_id: Some("ü"),
            subprotocol: Some("json.webpubsub.azure.v1"),
            state: Some("e30="),
        };
        let data = Data::Json(serde_json::json!({"a": 1}));
        let metadata = Metadata::new().with("Trace-Id", "t1").with("k", "v");
        let ev = Event::User {
            name: "echo",
            data: Some(&data),
            metadata: &metadata,
        };
        let o = event_request(&service(), &who, &ev, 7, UNIX_EPOCH, "http://h/echo".into());
        assert_eq!(o.method, Method::Post);
        let want = [
            ("ce-specversion", "1.0"),
            ("ce-awpsversion", "1.0"),
            ("ce-type", "azure.webpubsub.user.echo"),
            ("ce-source", "/hubs/Chat/client/c1"),
            ("ce-id", "7"),
            ("ce-time", "1970-01-01T00:00:00.000Z"),
            ("ce-hub", "chat"),
            ("ce-connectionId", "c1"),
            ("ce-userId", "ü"),
            ("ce-eventName", "echo"),
            ("ce-subprotocol", "json.webpubsub.azure.v1"),
            ("ce-connectionState", "e30="),
            ("WebHook-Request-Origin", "127.0.0.1"),
            ("x-webpubsub-metadata-trace-id", "t1"),
            ("x-webpubsub-metadata-k", "v"),
            ("Content-Type", "application/json"),
        ];
        for (k, v) in want {
            assert_eq!(header(&o, k), Some(v), "{k}");
        }
        assert!(
            o.headers
                .iter()
                .any(|(k, _)| k == "x-webpubsub-metadata-trace-id"),
            "metadata keys go in lower case"
        );
        assert_eq!(
            header(&o, "ce-signature"),
            Some(signature(&["key".into()], "c1").as_str())
        );
        assert_eq!(o.body, br#"{"a":1}"#);
    }

    #[test]
    fn metadata_keys_that_differ_only_in_case_become_one_header() {
        let mut out = Vec::new();
        let m = Metadata::new().with("A", "1").with("a", "2").with("b", "3");
        metadata_headers(&m, &mut out);
        let got: Vec<(&str, &str)> = out.iter().map(|(k, v)| (k.as_ref(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("x-webpubsub-metadata-a", "2"),
                ("x-webpubsub-metadata-b", "3")
            ]
        );
    }

    #[test]
    fn optional_headers_are_left_out_when_unknown() {
        let who = Identity {
            hub: "h",
            connection_id: "c",
            user_id: None,
            subprotocol: None,
            state: Some(""),
        };
        let o = event_request(
            &service(),
            &who,
            &Event::Connected,
            0,
            UNIX_EPOCH,
            "u".into(),
        );
        for k in ["ce-userId", "ce-subprotocol", "ce-connectionState"] {
            assert_eq!(header(&o, k), None, "{k}");
        }
        assert_eq!(header(&o, "ce-type"), Some("azure.webpubsub.sys.connected"));
        assert_eq!(o.body, b"{}");
        let o = event_request(
            &service(),
            &who,
            &Event::Disconnected("bye \"x\""),
            0,
            UNIX_EPOCH,
            "u".into(),
        );
        assert_eq!(o.body, br#"{"reason":"bye \"x\""}"#);
        assert_eq!(
            header(&o, "Content-Type"),
            Some("application/json; charset=utf-8")
        );
    }

    #[test]
    fn user_event_bodies_follow_the_data_type() {
        let cases = [
            (
                Some(Data::Text("hé".into())),
                "text/plain; charset=utf-8",
                "hé".as_bytes().to_vec(),
            ),
            (
                Some(Data::Binary(vec![0, 255])),
                "application/octet-stream",
                vec![0, 255],
            ),
            (
                Some(Data::Protobuf(vec![1])),
                "application/octet-stream",
                vec![1],
            ),
            (None, "text/plain; charset=utf-8", vec![]),
        ];
        for (data, ct, body) in cases {
            assert_eq!(user_body(data.as_ref()), (ct, body));
        }
    }

    #[test]
    fn the_connect_body_has_string_arrays_and_no_token() {
        let mut claims = Map::new();
        claims.insert("sub".into(), "u1".into());
        claims.insert("role".into(), serde_json::json!(["a", "b"]));
        claims.insert("exp".into(), 1700000000.into());
        claims.insert("nothing".into(), Value::Null);
        let req = ConnectRequest::new()
            .claims(claims)
            .query("access_token", "s3cr3t")
            .query("k", "v1")
            .query("k", "v2")
            .query("K", "v3")
            .header("Authorization", "Bearer s3cr3t")
            .header("X-A", "1")
            .header("x-a", "2")
            .subprotocol("p1");
        let body: Value = serde_json::from_slice(&connect_body(&req)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "claims": {"sub": ["u1"], "role": ["a", "b"], "exp": ["1700000000"]},
                "query": {"k": ["v1", "v2"], "K": ["v3"]},
                "headers": {"X-A": ["1", "2"]},
                "subprotocols": ["p1"],
                "clientCertificates": [],
            })
        );
        assert!(!String::from_utf8_lossy(&connect_body(&req)).contains("s3cr3t"));
    }

    #[test]
    fn the_validation_request_names_the_origin() {
        let o = validation_request(&service(), "http://h/validate".into());
        assert_eq!(o.method, Method::Options);
        assert_eq!(header(&o, "WebHook-Request-Origin"), Some("127.0.0.1"));
        assert_eq!(header(&o, "ce-awpsversion"), Some("1.0"));
        assert!(o.body.is_empty());
    }

    #[test]
    fn the_service_identity_comes_from_the_endpoint() {
        let s = Service::from_endpoint("https://[::1]:8443", "k");
        assert_eq!((s.host.as_str(), s.port), ("::1", Some(8443)));
        let s = Service::from_endpoint("http://localhost", "k");
        assert_eq!((s.host.as_str(), s.port), ("localhost", Some(80)));
    }
}
