//! The event handler's faults, end to end through a WebSocket client: unreachable, slower
//! than the timeout, answering 5xx, refusing validation (UPSTREAM.md §3, §5, §6). The client
//! sees a refused upgrade (connect) or `InvocationFailed` (events); the emulator's log says
//! plainly which URL (its secret query value hidden), which status and why.
//!
//! The slow and 5xx handlers are the official handler package's (`testkit/node/app_server.js`;
//! skipped with a message without Node); the unreachable one is a closed port.

mod support;

use parking_lot::Mutex;
use std::time::Duration;
use support::*;
use webpubsub_emulator::upstream::{EventHandlerConfig, UpstreamConfig, UserEventPattern};
use webpubsub_emulator::Emulator;
use webpubsub_protocol::{ClientMessage, Data, Metadata, ServiceMessage};
use webpubsub_testkit::log_capture::{self, Capture};
use webpubsub_testkit::node::{is, AppServer};

/// The log is the process's: one test at a time reads it.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A secret in the handler's URL (an Azure Functions key): never in a log line.
const SECRET: &str = "s3cr3t-function-key";

fn log() -> &'static Capture {
    let log = log_capture::install();
    log.clear();
    log
}

fn event(name: &str, ack_id: u64, data: impl Into<Data>) -> ClientMessage {
    ClientMessage::Event {
        event: name.into(),
        ack_id: Some(ack_id),
        data: data.into(),
        metadata: Metadata::new(),
    }
}

/// The ack of `id`: its error's message, if it failed with `InvocationFailed`.
fn invocation_failed(c: &mut Ws, id: u64) -> String {
    c.recv_until(|m| match m {
        ServiceMessage::Ack {
            ack_id,
            success: false,
            error: Some(e),
        } if *ack_id == id => {
            assert_eq!(e.name, "InvocationFailed");
            Some(e.message.clone())
        }
        ServiceMessage::Ack { ack_id, .. } if *ack_id == id => panic!("not a failure: {m:?}"),
        _ => None,
    })
}

/// The warnings logged so far, which must not show the secret. (The HTTP client crate's own
/// debug lines show whole URLs: the binary keeps them off unless `RUST_LOG` names it.)
fn warnings(log: &Capture) -> Vec<String> {
    let lines = log.lines();
    for l in lines.iter().filter(|l| !l.target.starts_with("ureq")) {
        assert!(
            !l.message.contains(SECRET),
            "a secret in the log ({} {}): {}",
            l.level,
            l.target,
            l.message
        );
    }
    lines
        .into_iter()
        .filter(|l| l.level <= log::Level::Warn && l.message.starts_with("upstream:"))
        .map(|l| l.message)
        .collect()
}

fn one_warning_with(log: &Capture, parts: &[&str]) -> String {
    let all = warnings(log);
    all.iter()
        .find(|w| parts.iter().all(|p| w.contains(p)))
        .cloned()
        .unwrap_or_else(|| panic!("no warning with {parts:?} in {all:#?}"))
}

#[test]
fn an_unreachable_handler_refuses_connect_with_500_and_fails_events() {
    let _one = ONE_AT_A_TIME.lock();
    let log = log();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/api/{{hub}}/{{event}}?code={SECRET}");
    let events_only = EventHandlerConfig::new(url.clone())
        .unwrap()
        .system_events([]);
    let cfg = UpstreamConfig::new()
        .max_retries(1)
        .retry_backoff(Duration::from_millis(10))
        .handler("down", EventHandlerConfig::new(url).unwrap())
        .handler("events", events_only);
    let emu = Emulator::builder().upstream(cfg).start().unwrap();

    let refused = try_connect(&emu.client_url("down").build(), Some(RELIABLE), None)
        .err()
        .expect("refused");
    assert_eq!(refused.status, 500);
    // Abuse protection asks first: the validation URL is the one that cannot be reached.
    let w = one_warning_with(log, &["event `connect`", "unreachable", "refused with 500"]);
    assert!(
        w.contains(&format!(
            "http://127.0.0.1:{port}/api/down/validate?code=***"
        )),
        "{w}"
    );

    let mut c = connect(&emu.client_url("events").build());
    c.send(event("echo", 1, "x"));
    assert_eq!(
        invocation_failed(&mut c, 1),
        "The event handler could not be reached"
    );
    one_warning_with(
        log,
        &[
            "event `echo`",
            "/api/events/validate?code=***",
            "unreachable",
        ],
    );
}

/// The app server, an emulator sending it hub `chat`'s and `strict`'s user events (not the
/// system events: the connections are accepted as the token says), and the log.
fn behind_express(test: &str, cfg: UpstreamConfig) -> Option<(AppServer, Emulator)> {
    let server = AppServer::start(test, "http://127.0.0.1:8080")?;
    let url = format!("{}?code={SECRET}", server.url_template());
    let handler = EventHandlerConfig::new(url)
        .unwrap()
        .user_events(UserEventPattern::All)
        .system_events([]);
    let cfg = cfg
        .handler("chat", handler.clone())
        .handler("strict", handler);
    Some((server, Emulator::builder().upstream(cfg).start().unwrap()))
}

#[test]
fn a_handler_slower_than_the_timeout_fails_the_event_without_a_retry() {
    let _one = ONE_AT_A_TIME.lock();
    let log = log();
    let cfg = UpstreamConfig::new().timeout(Duration::from_millis(500));
    let Some((server, emu)) = behind_express("a_handler_slower_than_the_timeout", cfg) else {
        return;
    };
    let mut c = connect(&emu.client_url("chat").build());
    c.send(event("hold", 1, "never-released"));
    assert_eq!(
        invocation_failed(&mut c, 1),
        "The event handler did not answer in time"
    );
    one_warning_with(
        log,
        &[
            "event `hold`",
            "/api/webpubsub/hubs/chat/hold?code=***",
            "in time",
        ],
    );
    // Not retried: the next event is the next the app server sees.
    c.send(event("echo", 2, "after"));
    assert_eq!(c.ack(2), (true, None));
    let seen = server.seen_until(|v| is(v, "echo", &c.connection_id));
    let holds = seen
        .iter()
        .filter(|v| is(v, "hold", &c.connection_id))
        .count();
    assert_eq!(holds, 1, "{seen:?}");
}

#[test]
fn a_5xx_answer_is_retried_then_fails_the_event() {
    let _one = ONE_AT_A_TIME.lock();
    let log = log();
    let cfg = UpstreamConfig::new()
        .max_retries(2)
        .retry_backoff(Duration::from_millis(10));
    let Some((server, emu)) = behind_express("a_5xx_answer_is_retried", cfg) else {
        return;
    };
    let mut c = connect(&emu.client_url("chat").build());
    c.send(event("fail500", 1, "x"));
    assert_eq!(
        invocation_failed(&mut c, 1),
        "The event handler answered 500"
    );
    one_warning_with(log, &["event `fail500`", "answered 500"]);
    c.send(event("echo", 2, "after"));
    assert_eq!(c.ack(2), (true, None));
    let seen = server.seen_until(|v| is(v, "echo", &c.connection_id));
    let tries = seen
        .iter()
        .filter(|v| is(v, "fail500", &c.connection_id))
        .count();
    assert_eq!(tries, 3, "a first try and 2 retries");
}

#[test]
fn a_handler_that_refuses_validation_gets_no_event() {
    let _one = ONE_AT_A_TIME.lock();
    let log = log();
    let Some((server, emu)) =
        behind_express("a_handler_that_refuses_validation", UpstreamConfig::new())
    else {
        return;
    };
    let mut c = connect(&emu.client_url("strict").build());
    c.send(event("echo", 1, "x"));
    assert_eq!(
        invocation_failed(&mut c, 1),
        "The event handler's endpoint did not pass abuse protection"
    );
    let w = one_warning_with(
        log,
        &[
            "validation failed",
            "/api/webpubsub/hubs/strict/validate?code=***",
        ],
    );
    assert!(w.contains("no event goes to this handler"), "{w}");
    // Asked once (the verdict is kept), and no event went there.
    c.send(event("echo", 2, "again"));
    invocation_failed(&mut c, 2);
    let mut chat = connect(&emu.client_url("chat").build());
    chat.send(event("echo", 1, "barrier"));
    assert_eq!(chat.ack(1), (true, None));
    let seen = server.seen_until(|v| is(v, "echo", &chat.connection_id));
    let validations = seen
        .iter()
        .filter(|v| v["seen"] == "validate" && v["path"] == "/api/webpubsub/hubs/strict/validate")
        .count();
    assert_eq!(validations, 1, "{seen:?}");
    assert!(!seen
        .iter()
        .any(|v| v["connectionId"] == c.connection_id.as_str()));
}
