//! What a handler's answer means (UPSTREAM.md §3, §5), and when a call is tried again
//! (§6). Pure.

use super::outcome::{ConnectAccepted, ConnectOutcome, EventOutcome, Failure, FailureKind};
use serde_json::Value;
use std::time::Duration;
use webpubsub_protocol::{check_group_name, check_metadata, check_metadata_entry, Data, Metadata};

/// A handler's HTTP answer, read in full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// `ce-connectionState`, if present (even empty).
    pub state: Option<String>,
    /// Every `WebHook-Allowed-Origin` line.
    pub allowed_origins: Vec<String>,
    /// Each `x-webpubsub-metadata-<key>` header: the key (in lower case) and the value, in
    /// the order received.
    pub metadata: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A `connect` answer; `offered` are the client's subprotocols, `url` names the handler
/// in failures.
pub(crate) fn connect_outcome(reply: &Reply, offered: &[String], url: &str) -> ConnectOutcome {
    if !reply.is_success() {
        return ConnectOutcome::Refused {
            status: reply.status,
            failure: Failure::new(
                FailureKind::Status(reply.status),
                format!("{url} answered {} to connect", reply.status),
            ),
        };
    }
    let bad = |why: String| ConnectOutcome::Refused {
        status: 500,
        failure: Failure::new(
            FailureKind::BadResponse,
            format!("{url} answered {} to connect with {why}", reply.status),
        ),
    };
    let mut accepted = ConnectAccepted {
        state: reply.state.clone(),
        handled: true,
        ..ConnectAccepted::default()
    };
    if reply.status == 204 || reply.body.iter().all(u8::is_ascii_whitespace) {
        return ConnectOutcome::Accepted(accepted);
    }
    let body: Value = match serde_json::from_slice(&reply.body) {
        Ok(v) => v,
        Err(e) => return bad(format!("a body that is not JSON ({e})")),
    };
    let obj = match body {
        Value::Null => return ConnectOutcome::Accepted(accepted),
        Value::Object(o) => o,
        _ => return bad("a JSON body that is not an object".into()),
    };
    for (key, value) in &obj {
        match key.as_str() {
            "userId" => match value {
                Value::Null => {}
                Value::String(s) if s.is_empty() => {}
                Value::String(s) => accepted.user_id = Some(s.clone()),
                _ => return bad("a userId that is not a string".into()),
            },
            "groups" | "roles" => {
                let list = match strings(value) {
                    Ok(l) => l,
                    Err(()) => return bad(format!("{key} that are not an array of strings")),
                };
                if key == "groups" {
                    if let Some(groups) = &list {
                        if let Some((g, e)) = groups
                            .iter()
                            .find_map(|g| check_group_name(g).err().map(|e| (g, e)))
                        {
                            return bad(format!("the group `{g}`: {e}"));
                        }
                    }
                    // As Microsoft's emulator: only a non-empty list replaces the token's.
                    accepted.groups = list.filter(|g| !g.is_empty());
                } else {
                    accepted.roles = list;
                }
            }
            "subprotocol" => match value {
                Value::Null => {}
                Value::String(p) if offered.iter().any(|o| o == p) => {
                    accepted.subprotocol = Some(p.clone())
                }
                Value::String(p) => {
                    return bad(format!(
                        "the subprotocol `{p}`, which the client did not offer ({offered:?})"
                    ))
                }
                _ => return bad("a subprotocol that is not a string".into()),
            },
            _ => {}
        }
    }
    ConnectOutcome::Accepted(accepted)
}

fn strings(v: &Value) -> Result<Option<Vec<String>>, ()> {
    match v {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or(()))
            .collect::<Result<Vec<_>, ()>>()
            .map(Some),
        _ => Err(()),
    }
}

/// A user event's answer, with the metadata of its headers.
pub(crate) fn event_outcome(reply: &Reply, event: &str, url: &str) -> EventOutcome {
    if !reply.is_success() {
        return EventOutcome::Failed(Failure::new(
            FailureKind::Status(reply.status),
            format!("{url} answered {} to event `{event}`", reply.status),
        ));
    }
    let metadata = reply_metadata(reply, event, url);
    if reply.status == 204 || reply.body.is_empty() {
        return EventOutcome::NoReply(metadata);
    }
    let media = reply
        .content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    let bad = |why: String| {
        EventOutcome::Failed(Failure::new(
            FailureKind::BadResponse,
            format!("{url} answered event `{event}` with {why}"),
        ))
    };
    let data = match media.as_deref() {
        Some("text/plain") => match String::from_utf8(reply.body.clone()) {
            Ok(t) => Data::Text(t),
            Err(_) => return bad("text/plain that is not UTF-8".into()),
        },
        Some("application/json") => match serde_json::from_slice(&reply.body) {
            Ok(v) => Data::Json(v),
            Err(e) => return bad(format!("application/json that is not JSON ({e})")),
        },
        _ => Data::Binary(reply.body.clone()),
    };
    EventOutcome::Reply(data, metadata)
}

/// The metadata of an answer's `x-webpubsub-metadata-*` headers (the last of a repeated
/// key wins), checked with the protocol's rules: an entry that breaks them is logged and
/// dropped, and so is all of it when together it is too large. The answer itself stands
/// (Microsoft's emulator fails the event instead; a reply should not be lost to a bad
/// header).
fn reply_metadata(reply: &Reply, event: &str, url: &str) -> Metadata {
    let mut metadata = Metadata::new();
    for (key, value) in &reply.metadata {
        match check_metadata_entry(key, value) {
            Ok(()) => {
                metadata.insert(key.clone(), value.clone());
            }
            Err(e) => log::warn!(
                "upstream: {url} answered event `{event}` with a metadata header the service refuses ({e}); it is dropped"
            ),
        }
    }
    if let Err(e) = check_metadata(&metadata) {
        log::warn!(
            "upstream: {url} answered event `{event}` with metadata the service refuses ({e}); it is dropped"
        );
        return Metadata::new();
    }
    metadata
}

/// Whether abuse protection passes: a 2xx whose `WebHook-Allowed-Origin` (repeated lines
/// or comma-separated) names `*`, `host` or `host:port`, ignoring case.
pub(crate) fn validation_passes(
    reply: &Reply,
    host: &str,
    port: Option<u16>,
) -> Result<(), String> {
    if !reply.is_success() {
        return Err(format!(
            "answered {} to the validation request",
            reply.status
        ));
    }
    let with_port = port.map(|p| format!("{host}:{p}"));
    let allowed = reply
        .allowed_origins
        .iter()
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .any(|o| {
            o == "*"
                || o.eq_ignore_ascii_case(host)
                || with_port
                    .as_deref()
                    .is_some_and(|hp| o.eq_ignore_ascii_case(hp))
        });
    if allowed {
        return Ok(());
    }
    let origin = with_port.unwrap_or_else(|| host.to_owned());
    if reply.allowed_origins.is_empty() {
        Err(format!(
            "answered the validation request without WebHook-Allowed-Origin (wanted `*` or `{origin}`)"
        ))
    } else {
        Err(format!(
            "allows the origins {:?}, not `{origin}`",
            reply.allowed_origins
        ))
    }
}

/// What one attempt of a call ended with, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// An HTTP status.
    Status(u16),
    /// No response, and the request may not have reached the handler: refused, reset, name
    /// not resolved, connect timeout.
    NoResponse,
    /// The response did not come in time (the handler may be running the event).
    Timeout,
    /// A failure that another try would repeat, or after the request may have reached the
    /// handler: TLS refused, a malformed response, an invalid URL.
    Unusable,
}

/// Which attempts are tried again, and after how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    pub max_retries: u32,
    pub backoff: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retries_done + 1`, or `None` for no retry: only 408,
    /// 5xx and failures before any response are retried, never a 2xx, another 4xx or a
    /// timeout.
    pub fn next_delay(&self, retries_done: u32, attempt: Attempt) -> Option<Duration> {
        let retryable = match attempt {
            Attempt::Status(s) => s == 408 || (500..600).contains(&s),
            Attempt::NoResponse => true,
            Attempt::Timeout | Attempt::Unusable => false,
        };
        if !retryable || retries_done >= self.max_retries {
            return None;
        }
        Some(self.backoff.saturating_mul(1 << retries_done.min(16)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, content_type: Option<&str>, body: &str) -> Reply {
        Reply {
            status,
            content_type: content_type.map(str::to_owned),
            body: body.as_bytes().to_vec(),
            ..Reply::default()
        }
    }

    fn accepted(o: ConnectOutcome) -> ConnectAccepted {
        match o {
            ConnectOutcome::Accepted(a) => a,
            other => panic!("refused: {other:?}"),
        }
    }

    fn refused(o: ConnectOutcome) -> (u16, FailureKind, String) {
        match o {
            ConnectOutcome::Refused { status, failure } => {
                (status, failure.kind(), failure.message().to_owned())
            }
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn a_connect_answer_sets_user_groups_roles_subprotocol_and_state() {
        let mut r = reply(
            200,
            Some("application/json"),
            r#"{"userId":"u2","groups":["g1","g2"],"roles":["webpubsub.joinLeaveGroup"],"subprotocol":"p2","other":1}"#,
        );
        r.state = Some("c3RhdGU=".into());
        let a = accepted(connect_outcome(&r, &["p1".into(), "p2".into()], "u"));
        assert_eq!(a.user_id.as_deref(), Some("u2"));
        assert_eq!(a.groups, Some(vec!["g1".into(), "g2".into()]));
        assert_eq!(a.roles, Some(vec!["webpubsub.joinLeaveGroup".into()]));
        assert_eq!(a.subprotocol.as_deref(), Some("p2"));
        assert_eq!(a.state.as_deref(), Some("c3RhdGU="));
        assert!(a.handled);
    }

    #[test]
    fn an_empty_or_null_connect_answer_keeps_the_token() {
        for r in [
            reply(204, None, ""),
            reply(200, None, " "),
            reply(200, None, "null"),
            reply(200, None, "{}"),
        ] {
            let a = accepted(connect_outcome(&r, &[], "u"));
            assert_eq!(
                (a.user_id, a.groups, a.roles, a.subprotocol),
                (None, None, None, None)
            );
        }
        // An empty group list keeps the token's; an empty role list removes its roles.
        let a = accepted(connect_outcome(
            &reply(200, None, r#"{"groups":[],"roles":[],"userId":""}"#),
            &[],
            "u",
        ));
        assert_eq!((a.groups, a.roles, a.user_id), (None, Some(vec![]), None));
    }

    #[test]
    fn a_refusing_connect_answer_keeps_its_status() {
        let (status, kind, msg) = refused(connect_outcome(
            &reply(401, None, "no"),
            &[],
            "http://h/connect",
        ));
        assert_eq!((status, kind), (401, FailureKind::Status(401)));
        assert_eq!(msg, "http://h/connect answered 401 to connect");
    }

    #[test]
    fn an_unusable_connect_answer_refuses_with_500() {
        let cases = [
            ("{", "a body that is not JSON"),
            ("[1]", "a JSON body that is not an object"),
            (r#"{"userId":1}"#, "a userId that is not a string"),
            (
                r#"{"groups":"g"}"#,
                "groups that are not an array of strings",
            ),
            (r#"{"roles":[1]}"#, "roles that are not an array of strings"),
            (r#"{"groups":[""]}"#, "the group ``: group name is empty"),
            (
                r#"{"subprotocol":"p9"}"#,
                "the subprotocol `p9`, which the client did not offer ([\"p1\"])",
            ),
            (r#"{"subprotocol":1}"#, "a subprotocol that is not a string"),
        ];
        for (body, why) in cases {
            let (status, kind, msg) = refused(connect_outcome(
                &reply(200, None, body),
                &["p1".into()],
                "u",
            ));
            assert_eq!((status, kind), (500, FailureKind::BadResponse), "{body}");
            assert!(
                msg.starts_with(&format!("u answered 200 to connect with {why}")),
                "{body}: {msg}"
            );
        }
    }

    #[test]
    fn a_user_event_answer_becomes_a_reply_by_content_type() {
        let out = |ct: Option<&str>, body: &str| event_outcome(&reply(200, ct, body), "e", "u");
        let none = Metadata::new;
        assert_eq!(
            out(Some("text/plain; charset=utf-8"), "hi"),
            EventOutcome::Reply(Data::Text("hi".into()), none())
        );
        assert_eq!(
            out(Some("Application/JSON"), r#"{"a":[1]}"#),
            EventOutcome::Reply(Data::Json(serde_json::json!({"a":[1]})), none())
        );
        assert_eq!(
            out(Some("application/octet-stream"), "b"),
            EventOutcome::Reply(Data::Binary(b"b".to_vec()), none())
        );
        assert_eq!(
            out(None, "b"),
            EventOutcome::Reply(Data::Binary(b"b".to_vec()), none())
        );
        assert_eq!(out(Some("text/plain"), ""), EventOutcome::NoReply(none()));
        assert_eq!(
            event_outcome(&reply(204, Some("text/plain"), "x"), "e", "u"),
            EventOutcome::NoReply(none())
        );
    }

    #[test]
    fn metadata_headers_of_an_answer_become_its_metadata_and_bad_ones_are_dropped() {
        let mut r = reply(200, Some("text/plain"), "hi");
        r.metadata = vec![
            ("trace-id".into(), "t1".into()),
            ("trace-id".into(), "t2".into()),
            ("bad key".into(), "x".into()),
            ("k".into(), "line\nbreak".into()),
            ("ok".into(), "v".into()),
        ];
        let want = Metadata::new().with("trace-id", "t2").with("ok", "v");
        assert_eq!(
            event_outcome(&r, "e", "u"),
            EventOutcome::Reply(Data::from("hi"), want.clone())
        );
        r.body.clear();
        assert_eq!(event_outcome(&r, "e", "u"), EventOutcome::NoReply(want));
        // Too large together: none of it.
        r.metadata = (0..9)
            .map(|i| (format!("k{i}"), "v".repeat(1000)))
            .collect();
        assert_eq!(
            event_outcome(&r, "e", "u"),
            EventOutcome::NoReply(Metadata::new())
        );
    }

    #[test]
    fn a_failing_or_unusable_user_event_answer_is_a_failure() {
        let kind = |o: EventOutcome| match o {
            EventOutcome::Failed(f) => (f.kind(), f.message().to_owned()),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            kind(event_outcome(&reply(500, None, "boom"), "e", "http://h/e")),
            (
                FailureKind::Status(500),
                "http://h/e answered 500 to event `e`".to_owned()
            )
        );
        let mut bin = reply(200, Some("text/plain"), "");
        bin.body = vec![0xff];
        assert_eq!(
            kind(event_outcome(&bin, "e", "u")).0,
            FailureKind::BadResponse
        );
        assert_eq!(
            kind(event_outcome(
                &reply(200, Some("application/json"), "{"),
                "e",
                "u"
            ))
            .0,
            FailureKind::BadResponse
        );
    }

    #[test]
    fn validation_wants_a_2xx_that_allows_the_host() {
        let with = |status: u16, origins: &[&str]| Reply {
            status,
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..Reply::default()
        };
        let check = |r: &Reply| validation_passes(r, "127.0.0.1", Some(8080));
        assert!(check(&with(200, &["*"])).is_ok());
        assert!(check(&with(200, &["example.com", "127.0.0.1:8080"])).is_ok());
        assert!(check(&with(204, &["a, 127.0.0.1"])).is_ok());
        assert!(validation_passes(&with(200, &["LOCALHOST"]), "localhost", None).is_ok());
        assert_eq!(
            check(&with(200, &[])).unwrap_err(),
            "answered the validation request without WebHook-Allowed-Origin (wanted `*` or `127.0.0.1:8080`)"
        );
        assert_eq!(
            check(&with(200, &["localhost:8080"])).unwrap_err(),
            "allows the origins [\"localhost:8080\"], not `127.0.0.1:8080`"
        );
        assert_eq!(
            check(&with(404, &["*"])).unwrap_err(),
            "answered 404 to the validation request"
        );
    }

    #[test]
    fn only_408_5xx_and_no_response_are_retried_with_doubling_backoff() {
        let p = RetryPolicy {
            max_retries: 3,
            backoff: Duration::from_millis(100),
        };
        assert_eq!(
            p.next_delay(0, Attempt::Status(503)),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            p.next_delay(1, Attempt::Status(408)),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            p.next_delay(2, Attempt::NoResponse),
            Some(Duration::from_millis(400))
        );
        assert_eq!(p.next_delay(3, Attempt::Status(500)), None);
        for never in [
            Attempt::Status(200),
            Attempt::Status(204),
            Attempt::Status(400),
            Attempt::Status(401),
            Attempt::Status(429),
            Attempt::Timeout,
            Attempt::Unusable,
        ] {
            assert_eq!(p.next_delay(0, never), None, "{never:?}");
        }
    }
}
