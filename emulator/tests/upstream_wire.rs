//! The upstream engine's requests as they are on the wire, read by a raw HTTP listener:
//! every CloudEvents header, the signature (express does not check it), the validation
//! request, state and retries (UPSTREAM.md §2, §5, §6).

#[path = "support/upstream.rs"]
mod support;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;
use support::{closed_port, connect, event, Answer, RawListener, Recorded};
use webpubsub_emulator::upstream::{
    ConnectOutcome, ConnectRequest, EventHandlerConfig, EventOutcome, FailureKind, Upstream,
    UpstreamConfig,
};
use webpubsub_protocol::{Data, Metadata};

/// The .NET SDK's test vector (UPSTREAM.md §2).
const VECTOR_KEY: &str = "7aab239577fd4f24bc919802fb629f5f";
const VECTOR_CONNECTION: &str = "0f9c97a2f0bf4706afe87a14e0797b11";
const VECTOR_SIGNATURE: &str =
    "sha256=7767effcb3946f3e1de039df4b986ef02c110b1469d02c0a06f41b3b727ab561";

fn engine(listener: &RawListener, cfg: UpstreamConfig, key: &str) -> Upstream {
    let h = EventHandlerConfig::new(listener.url("/events/{hub}/{event}")).unwrap();
    Upstream::new(cfg.handler("Chat", h), "http://127.0.0.1:8080", key)
}

fn hmac_hex(key: &str, msg: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(msg.as_bytes());
    let bytes = mac.finalize().into_bytes();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_headers(r: &Recorded, want: &[(&str, &str)]) {
    let wrong: Vec<String> = want
        .iter()
        .filter(|(k, v)| r.header(k) != Some(*v))
        .map(|(k, v)| format!("{k}: got {:?}, want {v:?}", r.header(k)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} {}:\n{}",
        r.method,
        r.path,
        wrong.join("\n")
    );
}

/// `2026-12-01T09:30:05.123Z`: RFC 3339, UTC.
fn is_rfc3339_utc(t: &str) -> bool {
    let b = t.as_bytes();
    t.len() == 24
        && b[23] == b'Z'
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|&i| b[i] == b':')
        && b[19] == b'.'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

#[test]
fn every_request_carries_the_cloudevents_headers_and_the_signature_of_the_access_key() {
    support::init_log();
    let listener = RawListener::start(vec![
        Answer::status(200).header("WebHook-Allowed-Origin", "*"),
        Answer::status(200)
            .header("ce-connectionState", "c3RhdGUtMQ==")
            .body("application/json", br#"{"userId":"app-user"}"#),
    ]);
    let up = engine(&listener, UpstreamConfig::new(), VECTOR_KEY);
    let conn = up.connection("Chat", VECTOR_CONNECTION);
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), "u1".into());
    let req = ConnectRequest::new()
        .user_id("u1")
        .claims(claims)
        .query("access_token", "s3cr3t")
        .query("k", "v")
        .header("Authorization", "Bearer s3cr3t")
        .subprotocol("json.reliable.webpubsub.azure.v1");
    let ConnectOutcome::Accepted(a) = connect(&conn, req) else {
        panic!("refused")
    };
    assert_eq!(a.user_id.as_deref(), Some("app-user"));

    // Abuse protection first: OPTIONS on the URL with {event}=validate, no signature.
    let v = listener.next();
    assert_eq!(
        (v.method.as_str(), v.path.as_str()),
        ("OPTIONS", "/events/Chat/validate")
    );
    check_headers(
        &v,
        &[
            ("webhook-request-origin", "127.0.0.1"),
            ("ce-awpsversion", "1.0"),
        ],
    );
    assert_eq!(v.header("ce-signature"), None);

    let c = listener.next();
    assert_eq!(
        (c.method.as_str(), c.path.as_str()),
        ("POST", "/events/Chat/connect")
    );
    check_headers(
        &c,
        &[
            ("ce-specversion", "1.0"),
            ("ce-awpsversion", "1.0"),
            ("ce-type", "azure.webpubsub.sys.connect"),
            (
                "ce-source",
                &format!("/hubs/Chat/client/{VECTOR_CONNECTION}"),
            ),
            ("ce-hub", "chat"),
            ("ce-connectionid", VECTOR_CONNECTION),
            ("ce-userid", "u1"),
            ("ce-eventname", "connect"),
            ("ce-signature", VECTOR_SIGNATURE),
            ("webhook-request-origin", "127.0.0.1"),
            ("content-type", "application/json; charset=utf-8"),
        ],
    );
    assert!(
        is_rfc3339_utc(c.header("ce-time").unwrap()),
        "{:?}",
        c.header("ce-time")
    );
    assert_eq!(c.header("ce-connectionState"), None);
    let body: Value = serde_json::from_slice(&c.body).unwrap();
    assert_eq!(body["query"], json!({"k": ["v"]}));
    assert_eq!(body["claims"], json!({"sub": ["u1"]}));
    assert!(!String::from_utf8_lossy(&c.body).contains("s3cr3t"));

    // The connection as established: the handler's user, the state it set.
    conn.connected(Some("app-user"), Some("json.reliable.webpubsub.azure.v1"));
    let e = event(&conn, "chat.msg", Some(Data::Binary(vec![1, 2])));
    assert_eq!(e, EventOutcome::NoReply(Metadata::new()));
    conn.disconnected("bye");
    let connected = listener.next();
    let user = listener.next();
    let disconnected = listener.next();
    for (r, path, ce_type, event_name) in [
        (
            &connected,
            "/events/Chat/connected",
            "azure.webpubsub.sys.connected",
            "connected",
        ),
        (
            &user,
            "/events/Chat/chat.msg",
            "azure.webpubsub.user.chat.msg",
            "chat.msg",
        ),
        (
            &disconnected,
            "/events/Chat/disconnected",
            "azure.webpubsub.sys.disconnected",
            "disconnected",
        ),
    ] {
        assert_eq!(r.path, path);
        check_headers(
            r,
            &[
                ("ce-type", ce_type),
                ("ce-eventname", event_name),
                ("ce-userid", "app-user"),
                ("ce-subprotocol", "json.reliable.webpubsub.azure.v1"),
                ("ce-connectionstate", "c3RhdGUtMQ=="),
                ("ce-signature", VECTOR_SIGNATURE),
            ],
        );
    }
    assert_eq!(connected.body, b"{}");
    assert_eq!(
        user.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(user.body, [1, 2]);
    assert_eq!(
        serde_json::from_slice::<Value>(&disconnected.body).unwrap(),
        json!({"reason": "bye"})
    );
    // Every event has its own id.
    let mut ids: Vec<&str> = [&c, &connected, &user, &disconnected]
        .iter()
        .map(|r| r.header("ce-id").unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}

#[test]
fn the_signature_is_the_hmac_of_the_connection_id_with_the_emulators_key() {
    support::init_log();
    let listener = RawListener::start(vec![]);
    let key = "another-access-key-0123456789abcdef";
    let up = engine(&listener, UpstreamConfig::new(), key);
    let conn = up.connection("Chat", "conn-42");
    assert_eq!(
        event(&conn, "e", None),
        EventOutcome::NoReply(Metadata::new())
    );
    let _validation = listener.next();
    let r = listener.next();
    assert_eq!(
        r.header("ce-signature"),
        Some(format!("sha256={}", hmac_hex(key, "conn-42")).as_str())
    );
    // The test vector, computed here independently of the engine.
    assert_eq!(
        format!("sha256={}", hmac_hex(VECTOR_KEY, VECTOR_CONNECTION)),
        VECTOR_SIGNATURE
    );
}

#[test]
fn a_validation_answer_without_the_origin_stops_events_and_is_not_asked_again() {
    support::init_log();
    let listener = RawListener::start(vec![
        Answer::status(200).header("WebHook-Allowed-Origin", "elsewhere.example")
    ]);
    let up = engine(&listener, UpstreamConfig::new(), "k");
    let conn = up.connection("Chat", "c");
    for _ in 0..2 {
        match event(&conn, "e", None) {
            EventOutcome::Failed(f) => {
                assert_eq!(f.kind(), FailureKind::Validation);
                assert!(f.message().contains("elsewhere.example"), "{f}");
            }
            other => panic!("{other:?}"),
        }
    }
    // A later request on another connection shows that nothing else was sent.
    let other = Upstream::new(
        UpstreamConfig::new().handler(
            "h",
            EventHandlerConfig::new(listener.url("/other/{event}")).unwrap(),
        ),
        "http://127.0.0.1:8080",
        "k",
    );
    assert_eq!(
        event(&other.connection("h", "c2"), "e", None),
        EventOutcome::NoReply(Metadata::new())
    );
    let seen: Vec<String> = (0..3).map(|_| listener.next().path).collect();
    assert_eq!(
        seen,
        ["/events/Chat/validate", "/other/validate", "/other/e"]
    );
}

#[test]
fn a_state_answer_replaces_the_state_and_an_empty_one_clears_it() {
    support::init_log();
    let listener = RawListener::start(vec![
        Answer::status(200).header("WebHook-Allowed-Origin", "127.0.0.1:8080"),
        Answer::status(200).header("ce-connectionState", "one"),
        Answer::status(500).header("ce-connectionState", "from-a-failure"),
        Answer::status(200),
        Answer::status(204).header("ce-connectionState", ""),
        Answer::status(200),
    ]);
    let cfg = UpstreamConfig::new().max_retries(0);
    let up = engine(&listener, cfg, "k");
    let conn = up.connection("Chat", "c");
    let _ = event(&conn, "a", None);
    assert_eq!(conn.state().as_deref(), Some("one"));
    assert!(matches!(event(&conn, "b", None), EventOutcome::Failed(_)));
    assert_eq!(
        conn.state().as_deref(),
        Some("one"),
        "a failed answer's state is ignored"
    );
    let _ = event(&conn, "c", None);
    let _ = event(&conn, "d", None);
    assert_eq!(conn.state(), None);
    let _ = event(&conn, "e", None);
    let sent: Vec<Option<String>> = (0..6)
        .map(|_| {
            listener
                .next()
                .header("ce-connectionState")
                .map(str::to_owned)
        })
        .collect();
    let one = Some("one".to_owned());
    assert_eq!(sent, [None, None, one.clone(), one.clone(), one, None]);
}

#[test]
fn only_408_5xx_and_failures_before_an_answer_are_retried() {
    support::init_log();
    let ok_origin = || Answer::status(200).header("WebHook-Allowed-Origin", "*");
    type Check = Box<dyn Fn(&EventOutcome) -> bool>;
    // (the listener's answers, retries allowed, POSTs expected, the outcome wanted)
    let cases: Vec<(Vec<Answer>, u32, usize, Check)> = vec![
        (
            vec![
                ok_origin(),
                Answer::status(503),
                Answer::status(408),
                Answer::status(200).body("text/plain", b"third"),
            ],
            3,
            3,
            Box::new(|o| *o == EventOutcome::Reply(Data::from("third"), Metadata::new())),
        ),
        (
            vec![
                ok_origin(),
                Answer::status(500),
                Answer::status(500),
                Answer::status(500),
            ],
            2,
            3,
            Box::new(
                |o| matches!(o, EventOutcome::Failed(f) if f.kind() == FailureKind::Status(500)),
            ),
        ),
        (
            // Scripts hold only the answers the case uses: the marker's come after.
            vec![ok_origin(), Answer::status(429)],
            3,
            1,
            Box::new(
                |o| matches!(o, EventOutcome::Failed(f) if f.kind() == FailureKind::Status(429)),
            ),
        ),
        (
            vec![
                ok_origin(),
                Answer::status(200).body("application/json", b"{"),
            ],
            3,
            1,
            Box::new(
                |o| matches!(o, EventOutcome::Failed(f) if f.kind() == FailureKind::BadResponse),
            ),
        ),
    ];
    for (i, (script, retries, want_posts, ok)) in cases.into_iter().enumerate() {
        let listener = RawListener::start(script);
        let cfg = UpstreamConfig::new()
            .max_retries(retries)
            .retry_backoff(Duration::from_millis(10));
        let up = engine(&listener, cfg, "k");
        let outcome = event(&up.connection("Chat", "c"), "e", None);
        assert!(ok(&outcome), "case {i}: {outcome:?}");
        // Drain the requests through a marker on a handler of its own.
        let marker = Upstream::new(
            UpstreamConfig::new().handler(
                "m",
                EventHandlerConfig::new(listener.url("/marker/{event}")).unwrap(),
            ),
            "http://127.0.0.1:8080",
            "k",
        );
        let _ = event(&marker.connection("m", "c"), "e", None);
        let mut posts = 0;
        loop {
            let r = listener.next();
            if r.path.starts_with("/marker/") && r.method == "POST" {
                break;
            }
            if r.method == "POST" {
                posts += 1;
                assert_eq!(
                    r.header("ce-id"),
                    Some("0"),
                    "a retry resends the same event"
                );
            }
        }
        assert_eq!(posts, want_posts, "case {i}");
    }
}

#[test]
fn an_unreachable_handler_refuses_connect_and_fails_events() {
    support::init_log();
    let port = closed_port();
    let h = EventHandlerConfig::new(format!("http://127.0.0.1:{port}/{{event}}")).unwrap();
    let cfg = UpstreamConfig::new()
        .handler("chat", h)
        .max_retries(2)
        .retry_backoff(Duration::from_millis(10));
    let up = Upstream::new(cfg, "http://127.0.0.1:8080", "k");
    let conn = up.connection("chat", "c");
    match connect(&conn, ConnectRequest::new()) {
        ConnectOutcome::Refused { status, failure } => {
            assert_eq!((status, failure.kind()), (500, FailureKind::Unreachable));
            assert!(
                failure
                    .message()
                    .contains(&format!("127.0.0.1:{port}/validate")),
                "{failure}"
            );
        }
        other => panic!("{other:?}"),
    }
    match event(&conn, "e", None) {
        EventOutcome::Failed(f) => assert_eq!(f.kind(), FailureKind::Unreachable),
        other => panic!("{other:?}"),
    }
    // No handler for the hub: the event fails without a call.
    match event(&up.connection("lobby", "c"), "e", None) {
        EventOutcome::Failed(f) => assert_eq!(f.kind(), FailureKind::NoHandler),
        other => panic!("{other:?}"),
    }
}

#[test]
fn shutdown_fails_queued_events_and_cuts_a_call_in_flight() {
    support::init_log();
    // A listener that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let (conns_tx, conns_rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for s in silent.incoming().flatten() {
            let _ = conns_tx.send(s);
        }
    });
    let h = EventHandlerConfig::new(format!("http://127.0.0.1:{port}/{{event}}")).unwrap();
    let up = Upstream::new(
        UpstreamConfig::new().handler("chat", h),
        "http://127.0.0.1:8080",
        "k",
    );
    let conn = up.connection("chat", "c");
    let first = support::send(&conn, "e", None);
    let queued = support::send(&conn, "e", None);
    let _held = conns_rx.recv_timeout(support::WAIT).unwrap();
    up.shutdown(Duration::from_millis(200));
    for rx in [first, queued] {
        match rx.recv_timeout(support::WAIT).unwrap() {
            EventOutcome::Failed(f) => assert!(
                matches!(
                    f.kind(),
                    FailureKind::Stopping | FailureKind::Timeout | FailureKind::Unreachable
                ),
                "{f:?}"
            ),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(up.worker_threads(), 0);
}

#[test]
fn an_https_handler_is_reached_over_tls_with_its_root_certificate_only() {
    support::init_log();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let identity = native_tls::Identity::from_pkcs8(
        cert.cert.pem().as_bytes(),
        cert.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let listener = RawListener::start_tls(vec![], identity);
    let url = format!("https://localhost:{}/{{event}}", listener.port);
    let handler = EventHandlerConfig::new(url).unwrap();
    // The platform's roots do not know the self-signed certificate: refused.
    let untrusted = Upstream::new(
        UpstreamConfig::new().handler("chat", handler.clone()),
        "http://127.0.0.1:8080",
        "k",
    );
    match event(&untrusted.connection("chat", "c"), "e", None) {
        EventOutcome::Failed(f) => assert_eq!(f.kind(), FailureKind::Unreachable, "{f}"),
        other => panic!("{other:?}"),
    }
    let trusted = Upstream::new(
        UpstreamConfig::new()
            .handler("chat", handler)
            .add_root_certificate(cert.cert.der().to_vec()),
        "http://127.0.0.1:8080",
        "k",
    );
    assert_eq!(
        event(&trusted.connection("chat", "c"), "e", Some(Data::from("x"))),
        EventOutcome::NoReply(Metadata::new())
    );
    let v = listener.next();
    let e = listener.next();
    assert_eq!(
        (v.method.as_str(), e.method.as_str(), e.body.as_slice()),
        ("OPTIONS", "POST", b"x".as_slice())
    );
}
