//! The upstream engine against a real app server: `testkit/node/app_server.js` on the official
//! CloudEvents handler (`@azure/web-pubsub-express` 1.1.0 with express), driven through
//! `webpubsub_emulator::upstream` directly (UPSTREAM.md §2–§6).
//!
//! Needs node and npm (skipped with a message if missing) and, the first time, the npm
//! registry for `testkit/node/setup_node.sh`.

#[path = "support/upstream.rs"]
mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use std::time::Duration;
use support::{connect, event, is, send, AppServer, WAIT};
use webpubsub_emulator::upstream::{
    ConnectOutcome, ConnectRequest, EventHandlerConfig, EventOutcome, FailureKind, Upstream,
    UpstreamConfig,
};
use webpubsub_protocol::{Data, Metadata};

const KEY: &str = "test-access-key-of-at-least-32-bytes";

fn upstream(server: &AppServer, cfg: UpstreamConfig) -> Upstream {
    let handler = EventHandlerConfig::new(server.url_template()).unwrap();
    let cfg = ["chat", "allowed", "strict"]
        .into_iter()
        .fold(cfg, |c, hub| c.handler(hub, handler.clone()));
    Upstream::new(cfg, "http://127.0.0.1:8080", KEY)
}

fn state_json(state: &str) -> Value {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(state)
        .expect("express sets base64 state");
    serde_json::from_slice(&raw).unwrap()
}

fn failed(o: EventOutcome) -> FailureKind {
    match o {
        EventOutcome::Failed(f) => f.kind(),
        other => panic!("not a failure: {other:?}"),
    }
}

/// Makes every record the server printed before now readable: an echo on another
/// connection, whose record comes after them.
fn barrier(server: &AppServer, up: &Upstream) -> Vec<Value> {
    let c = up.connection("chat", "barrier");
    let mark = format!("mark-{}", std::process::id());
    assert_eq!(
        event(&c, "echo", Some(Data::from(mark.as_str()))),
        EventOutcome::Reply(Data::from(mark.as_str()), Metadata::new())
    );
    let mut all = server.seen_until(|v| v["seen"] == "echo" && v["data"] == mark.as_str());
    all.pop();
    all
}

#[test]
fn a_connect_answer_shapes_the_connection_and_the_token_never_reaches_the_app() {
    support::init_log();
    let Some(server) = support::app_server("a_connect_answer_shapes_the_connection") else {
        return;
    };
    let up = upstream(&server, UpstreamConfig::new());
    let conn = up.connection("chat", "conn-connect");
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), "u1".into());
    claims.insert("role".into(), json!(["webpubsub.sendToGroup"]));
    let req = ConnectRequest::new()
        .user_id("u1")
        .claims(claims)
        .query("access_token", "s3cr3t-token")
        .query("pick", "p2")
        .header("Authorization", "Bearer s3cr3t-token")
        .header("X-Client", "rust")
        .subprotocol("p1")
        .subprotocol("p2");
    let ConnectOutcome::Accepted(a) = connect(&conn, req) else {
        panic!("refused");
    };
    assert!(a.handled);
    assert_eq!(a.user_id.as_deref(), Some("app-u1"));
    assert_eq!(a.groups, Some(vec!["app-group".to_owned()]));
    assert_eq!(a.roles, Some(vec!["webpubsub.joinLeaveGroup".to_owned()]));
    assert_eq!(a.subprotocol.as_deref(), Some("p2"));
    assert_eq!(state_json(a.state.as_deref().unwrap()), json!({"calls": 0}));
    assert_eq!(conn.state(), a.state);

    let seen = server.seen(|v| is(v, "connect", "conn-connect"));
    assert_eq!(seen["userId"], "u1");
    assert_eq!(seen["claims"]["sub"], json!(["u1"]));
    assert_eq!(seen["claims"]["role"], json!(["webpubsub.sendToGroup"]));
    assert_eq!(seen["query"], json!({"pick": ["p2"]}));
    assert_eq!(seen["headers"]["X-Client"], json!(["rust"]));
    assert!(seen["headers"].get("Authorization").is_none());
    assert_eq!(seen["subprotocols"], json!(["p1", "p2"]));
    assert_eq!(seen["clientCertificates"], json!([]));
    assert_eq!(seen["origin"], "127.0.0.1");
    assert!(seen["signature"].as_str().unwrap().starts_with("sha256="));
    assert!(!seen.to_string().contains("s3cr3t"));
}

#[test]
fn a_connect_refusal_keeps_the_handlers_401() {
    support::init_log();
    let Some(server) = support::app_server("a_connect_refusal_keeps_the_handlers_401") else {
        return;
    };
    let up = upstream(&server, UpstreamConfig::new());
    let conn = up.connection("chat", "conn-refused");
    match connect(&conn, ConnectRequest::new().query("refuse", "1")) {
        ConnectOutcome::Refused { status, failure } => {
            assert_eq!(status, 401);
            assert_eq!(failure.kind(), FailureKind::Status(401));
        }
        other => panic!("{other:?}"),
    }
    // A refused connection is never announced as connected or disconnected.
    conn.disconnected("never connected");
    let before = barrier(&server, &up);
    assert!(
        !before.iter().any(|v| v["connectionId"] == "conn-refused"
            && v["seen"] != "connect"
            && v["seen"] != "ce"),
        "{before:?}"
    );
}

#[test]
fn user_events_echo_text_json_and_binary_with_their_data_types() {
    support::init_log();
    let Some(server) = support::app_server("user_events_echo_text_json_and_binary") else {
        return;
    };
    let up = upstream(&server, UpstreamConfig::new());
    let conn = up.connection("chat", "conn-echo");
    conn.connected(Some("u-echo"), Some("json.reliable.webpubsub.azure.v1"));
    let cases = [
        Data::Text("héllo".into()),
        Data::Json(json!({"a": [1, 2.5, "x"], "b": null})),
        Data::Binary(vec![0, 1, 2, 254, 255]),
    ];
    for data in cases {
        assert_eq!(
            event(&conn, "echo", Some(data.clone())),
            EventOutcome::Reply(data, Metadata::new())
        );
    }
    assert_eq!(
        event(&conn, "noreply", None),
        EventOutcome::NoReply(Metadata::new())
    );
    let seen = server.seen(|v| is(v, "echo", "conn-echo"));
    assert_eq!(
        (seen["dataType"].as_str(), seen["userId"].as_str()),
        (Some("text"), Some("u-echo"))
    );
    let seen = server.seen(|v| is(v, "echo", "conn-echo"));
    assert_eq!(seen["dataType"], "json");
    let seen = server.seen(|v| is(v, "echo", "conn-echo"));
    assert_eq!(
        (seen["dataType"].as_str(), seen["data"].as_str()),
        (Some("binary"), Some("AAEC/v8="))
    );
}

#[test]
fn the_handlers_state_comes_back_with_every_later_event_in_order() {
    support::init_log();
    let Some(server) = support::app_server("the_handlers_state_comes_back") else {
        return;
    };
    let up = upstream(&server, UpstreamConfig::new());
    let conn = up.connection("chat", "conn-state");
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), "u9".into());
    let ConnectOutcome::Accepted(a) =
        connect(&conn, ConnectRequest::new().user_id("u9").claims(claims))
    else {
        panic!("refused");
    };
    conn.connected(a.user_id.as_deref(), None);
    // Queued back to back: each must see the state the one before it set.
    let pending: Vec<_> = (0..3).map(|_| send(&conn, "count", None)).collect();
    for (i, rx) in pending.into_iter().enumerate() {
        match rx.recv_timeout(WAIT).unwrap() {
            EventOutcome::Reply(Data::Json(v), _) => {
                // `calls` is the incoming state's count plus one: the state came back.
                assert_eq!(v["calls"], i + 1);
                assert_eq!(v["userId"], "app-u9");
                assert_eq!(v["state"], json!({"calls": i + 1}));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(state_json(&conn.state().unwrap()), json!({"calls": 3}));
    conn.disconnected("closed by the client");
    let seen: Vec<Value> = server
        .seen_until(|v| is(v, "disconnected", "conn-state"))
        .into_iter()
        .filter(|v| v["connectionId"] == "conn-state" && v["seen"] != "ce")
        .collect();
    let order: Vec<&str> = seen.iter().map(|v| v["seen"].as_str().unwrap()).collect();
    assert_eq!(
        order,
        [
            "connect",
            "connected",
            "count",
            "count",
            "count",
            "disconnected"
        ]
    );
    let last = seen.last().unwrap();
    assert_eq!(last["reason"], "closed by the client");
    assert_eq!(last["states"], json!({"calls": 3}));
}

#[test]
fn a_held_event_delays_its_own_connection_only() {
    support::init_log();
    let Some(server) = support::app_server("a_held_event_delays_its_own_connection_only") else {
        return;
    };
    let up = upstream(&server, UpstreamConfig::new());
    let (a, b) = (
        up.connection("chat", "conn-a"),
        up.connection("chat", "conn-b"),
    );
    let a_hold = send(&a, "hold", Some(Data::from("key-a")));
    let a_after = send(&a, "echo", Some(Data::from("after the hold")));
    server.seen(|v| is(v, "hold", "conn-a"));
    // b is answered while a's first event is held, and a's second has not been sent.
    assert_eq!(
        event(&b, "echo", Some(Data::from("b"))),
        EventOutcome::Reply(Data::from("b"), Metadata::new())
    );
    let before = server.seen_until(|v| is(v, "echo", "conn-b"));
    assert!(
        !before.iter().any(|v| is(v, "echo", "conn-a")),
        "{before:?}"
    );
    assert!(a_hold.try_recv().is_err() && a_after.try_recv().is_err());
    // Releasing a's event lets a's line go on, in order.
    assert_eq!(
        event(&b, "release", Some(Data::from("key-a"))),
        EventOutcome::Reply(Data::from("ok"), Metadata::new())
    );
    assert_eq!(
        a_hold.recv_timeout(WAIT).unwrap(),
        EventOutcome::Reply(Data::from("released key-a"), Metadata::new())
    );
    assert_eq!(
        a_after.recv_timeout(WAIT).unwrap(),
        EventOutcome::Reply(Data::from("after the hold"), Metadata::new())
    );
    assert!(up.worker_threads() <= webpubsub_emulator::upstream::DEFAULT_MAX_WORKERS);
}

#[test]
fn validation_runs_once_per_url_and_a_refused_origin_stops_every_event() {
    support::init_log();
    let Some(server) = support::app_server("validation_runs_once_per_url") else {
        return;
    };
    let up = upstream(&server, UpstreamConfig::new());
    let chat = up.connection("chat", "conn-v1");
    for _ in 0..3 {
        assert_eq!(
            event(&chat, "noreply", None),
            EventOutcome::NoReply(Metadata::new())
        );
    }
    // express with allowedEndpoints answers `127.0.0.1:8080`: the host and port match.
    let allowed = up.connection("allowed", "conn-v2");
    assert_eq!(
        event(&allowed, "noreply", None),
        EventOutcome::NoReply(Metadata::new())
    );
    let strict = up.connection("strict", "conn-v3");
    assert_eq!(
        failed(event(&strict, "noreply", None)),
        FailureKind::Validation
    );
    assert_eq!(
        failed(event(&strict, "echo", None)),
        FailureKind::Validation
    );
    let seen = barrier(&server, &up);
    let validations: Vec<&str> = seen
        .iter()
        .filter(|v| v["seen"] == "validate")
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        validations,
        [
            "/api/webpubsub/hubs/chat/validate",
            "/api/webpubsub/hubs/allowed/validate",
            "/api/webpubsub/hubs/strict/validate",
        ]
    );
    let v = seen.iter().find(|v| v["seen"] == "validate").unwrap();
    assert_eq!(
        (v["origin"].as_str(), v["awpsversion"].as_str()),
        (Some("127.0.0.1"), Some("1.0"))
    );
    assert!(
        !seen.iter().any(|v| v["connectionId"] == "conn-v3"),
        "an event reached a refused handler"
    );
}

#[test]
fn a_5xx_answer_is_retried_then_fails_the_event() {
    support::init_log();
    let Some(server) = support::app_server("a_5xx_answer_is_retried_then_fails_the_event") else {
        return;
    };
    let cfg = UpstreamConfig::new()
        .max_retries(2)
        .retry_backoff(Duration::from_millis(20));
    let up = upstream(&server, cfg);
    let conn = up.connection("chat", "conn-5xx");
    assert_eq!(
        failed(event(&conn, "fail500", None)),
        FailureKind::Status(500)
    );
    // A 4xx is never retried.
    assert_eq!(
        failed(event(&conn, "unknown-event", None)),
        FailureKind::Status(400)
    );
    let seen = barrier(&server, &up);
    let count = |name: &str| seen.iter().filter(|v| is(v, name, "conn-5xx")).count();
    assert_eq!((count("fail500"), count("unknown-event")), (3, 1));
}

#[test]
fn a_handler_slower_than_the_timeout_fails_the_event_without_a_retry() {
    support::init_log();
    let Some(server) = support::app_server("a_handler_slower_than_the_timeout") else {
        return;
    };
    let cfg = UpstreamConfig::new()
        .timeout(Duration::from_millis(700))
        .retry_backoff(Duration::from_millis(10));
    let up = upstream(&server, cfg);
    let conn = up.connection("chat", "conn-slow");
    assert_eq!(
        failed(event(&conn, "hold", Some(Data::from("never-released")))),
        FailureKind::Timeout
    );
    // The connection goes on with its next event.
    assert_eq!(
        event(&conn, "echo", Some(Data::from("next"))),
        EventOutcome::Reply(Data::from("next"), Metadata::new())
    );
    let seen = barrier(&server, &up);
    assert_eq!(
        seen.iter().filter(|v| is(v, "hold", "conn-slow")).count(),
        1
    );
}
