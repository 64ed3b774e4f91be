//! The official Python client's getting-started guide, step by step, with this crate, on the
//! emulator: one test per step (the crate docs' "Getting started" section is the prose twin).
//!
//! The tests of this file run one at a time (`SERIAL`): the thread counts are the process's.

mod support;

use crossbeam_channel::{unbounded, Receiver};
use parking_lot::Mutex;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{assert_client_threads, builder, recv, recv_until, url, HUB, WAIT};
use webpubsub_client::protocol::{ClientMessage, REDACTED};
use webpubsub_client::{
    ClientState, Credential, Error, Event, RequestOptions, RetryPolicy, StateError, WebPubSubClient,
};
use webpubsub_emulator::{Emulator, Observation};

static SERIAL: Mutex<()> = Mutex::new(());

/// The one filter the troubleshooting step tells users to set in `RUST_LOG`.
const DEBUG_FILTER: &str = "webpubsub_client=debug";

/// The crate docs, where each step's Rust twin is.
fn crate_docs() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap()
}

/// A second client, in `group`, that records the group messages it receives.
fn member(emu: &Emulator, user: &str, group: &str) -> (WebPubSubClient, Receiver<String>) {
    let client = builder(url(emu, user)).build().unwrap();
    let (tx, rx) = unbounded();
    client.on_group_message(move |m| {
        let _ = tx.send(m.data.as_text().unwrap_or_default().to_owned());
    });
    client.start().unwrap().detach();
    client.join_group(group).unwrap();
    (client, rx)
}

/// Waits until `n` requests matching `pred` were handled by the emulator.
fn requests(
    obs: &Receiver<Observation>,
    n: usize,
    pred: impl Fn(&ClientMessage) -> bool,
) -> Vec<ClientMessage> {
    let mut seen = Vec::new();
    while seen.len() < n {
        match recv_until(
            obs,
            |o| matches!(o, Observation::Request { message, .. } if pred(message)),
        ) {
            Observation::Request { message, .. } => seen.push(message),
            _ => unreachable!(),
        }
    }
    seen
}

#[test]
fn step1_the_install_line_names_this_package() {
    // `cargo add webpubsub-client` installs this package, imported as `webpubsub_client`.
    let _s = SERIAL.lock();
    assert_eq!(env!("CARGO_PKG_NAME"), "webpubsub-client");
    assert!(crate_docs().contains("cargo add webpubsub-client"));
    let _ = WebPubSubClient::new("wss://x.webpubsub.azure.com/client/hubs/h?access_token=t")
        .expect("the guide's URL form is accepted");
}

#[test]
fn step2_a_client_access_url_connects_and_the_guard_scopes_the_session() {
    // B3, B6: Python's `with client:` is the guard `start()` returns.
    let _s = SERIAL.lock();
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let client = WebPubSubClient::new(&url(&emu, "alice")).unwrap();
    {
        let _with_client = client.start().unwrap();
        assert_eq!(client.state(), ClientState::Connected);
        assert!(client.connection_id().is_some());
        assert_client_threads(2);
    }
    assert_eq!(client.state(), ClientState::Stopped);
    assert_client_threads(0);
    recv_until(&obs, |o| matches!(o, Observation::SessionEnded { .. }));
}

#[test]
fn step3_a_listener_registered_before_joining_misses_nothing() {
    // B12: the listener exists before the join's ack, so the first message after it arrives.
    let _s = SERIAL.lock();
    let emu = Emulator::start().unwrap();
    let (peer, _) = member(&emu, "bob", "other");
    let client = builder(url(&emu, "alice")).build().unwrap();
    let _with_client = client.start().unwrap();
    let (tx, received) = unbounded();
    client.on_group_message(move |m| {
        let _ = tx.send((m.group.clone(), m.data.as_text().map(str::to_owned)));
    });
    client.join_group("group1").unwrap();
    // A member publishes the moment the join is acknowledged.
    peer.send_to_group("group1", "first").unwrap();
    assert_eq!(recv(&received), ("group1".into(), Some("first".into())));
    peer.stop();
}

#[test]
fn step4_a_text_message_sent_to_the_group_reaches_its_members() {
    // B12, B25
    let _s = SERIAL.lock();
    let emu = Emulator::start().unwrap();
    let (bob, bob_received) = member(&emu, "bob", "group1");
    let client = builder(url(&emu, "alice")).build().unwrap();
    let _with_client = client.start().unwrap();
    client.join_group("group1").unwrap();
    let outcome = client.send_to_group("group1", "hello world").unwrap();
    assert!(!outcome.duplicate);
    assert_eq!(recv(&bob_received), "hello world");
    bob.stop();
}

#[test]
fn step5_connected_disconnected_stopped_fire_and_start_from_stopped_restarts_the_client() {
    // B9, B10, B11, B5, B7: the guide restarts the client from its `stopped` handler.
    let _s = SERIAL.lock();
    let emu = Emulator::start().unwrap();
    let hub = emu.hub(HUB);
    let client = builder(url(&emu, "alice"))
        .auto_reconnect(false)
        .build()
        .unwrap();
    let (tx, log) = unbounded::<String>();
    let t = tx.clone();
    client.on_connected(move |id, _| {
        let _ = t.send(format!("connected {id}"));
    });
    let t = tx.clone();
    client.on_disconnected(move |_, message, _| {
        let _ = t.send(format!("disconnected {message:?}"));
    });
    let t = tx.clone();
    let restart = client.clone();
    client.on_stopped(move || {
        let _ = t.send("stopped".into());
        let _ = t.send(match restart.start() {
            Ok(guard) => {
                // The restarted client outlives this callback.
                guard.detach();
                "restarted".into()
            }
            Err(e) => format!("restart refused: {e:?}"),
        });
    });
    let (tx, server_messages) = unbounded();
    client.on_server_message(move |m| {
        let _ = tx.send(m.data.as_text().unwrap_or_default().to_owned());
    });

    let guard = client.start().unwrap();
    let first = client.connection_id().unwrap();
    assert_eq!(recv(&log), format!("connected {first}"));
    // The service ends the session; without auto-reconnect the client stops by itself.
    assert!(hub.close_connection(&first, "maintenance"));
    assert_eq!(recv(&log), "disconnected Some(\"maintenance\")");
    assert_eq!(recv(&log), "stopped");
    // `start()` in the callback returned once connected; the restarted connection's own
    // callbacks come after that callback returned (one at a time).
    assert_eq!(recv(&log), "restarted");
    let connected = recv(&log);
    let second = client.connection_id().unwrap();
    assert_eq!(connected, format!("connected {second}"));
    assert_ne!(second, first);

    // Events flow on the restarted client.
    assert_eq!(client.state(), ClientState::Connected);
    client.join_group("room").unwrap();
    hub.send_to_group("room", "after the restart");
    assert_eq!(recv(&server_messages), "after the restart");
    assert_client_threads(2);

    // The first guard still stops the client: a stop that waits is final, so the `stopped`
    // callback's start is refused, and every thread ends.
    drop(guard);
    assert_eq!(recv(&log), "disconnected None");
    assert_eq!(recv(&log), "stopped");
    assert_eq!(
        recv(&log),
        format!("restart refused: {:?}", Error::State(StateError::Stopping))
    );
    assert_eq!(client.state(), ClientState::Stopped);
    assert_client_threads(0);
    assert!(log.try_recv().is_err(), "nothing after the final stop");
}

#[test]
fn step6_server_messages_arrive_and_group_messages_only_from_joined_groups() {
    // B12
    let _s = SERIAL.lock();
    let emu = Emulator::start().unwrap();
    let client = builder(url(&emu, "alice")).build().unwrap();
    let events = client.events();
    let _with_client = client.start().unwrap();
    client.join_group("joined").unwrap();
    let (peer, _) = member(&emu, "bob", "elsewhere");
    emu.hub(HUB).send_to_user("alice", "from the server");
    // Acked in this order by one sender: a wrongly delivered "not joined" would come first.
    peer.send_to_group("not-joined", "not for alice").unwrap();
    peer.send_to_group("joined", "for alice").unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match recv(&events) {
            Event::ServerMessage(m) => got.push(format!("server: {}", m.data.as_text().unwrap())),
            Event::GroupMessage(m) => got.push(format!(
                "{} from {:?}: {}",
                m.group,
                m.from_user_id,
                m.data.as_text().unwrap()
            )),
            _ => {}
        }
    }
    assert_eq!(
        got,
        [
            "server: from the server",
            "joined from Some(\"bob\"): for alice"
        ]
    );
    peer.stop();
}

#[test]
fn step7_only_groups_the_client_joined_are_rejoined_and_a_refused_rejoin_is_reported() {
    // B13, B23: after a new connection the client rejoins the groups it joined — not the
    // one the server added it to — and a rejoin the service refuses raises
    // `rejoin-group-failed` with the group and the error.
    let _s = SERIAL.lock();
    let emu = Emulator::start().unwrap();
    let hub = emu.hub(HUB);
    let connections = Arc::new(AtomicUsize::new(0));
    let (n, base) = (connections.clone(), emu.client_url(HUB));
    // The first connection may join both groups; the next one only "client-joined".
    let credential = Credential::from_fn(move || {
        let mut url = base.clone().user_id("alice");
        url = url.role("webpubsub.joinLeaveGroup.client-joined");
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            url = url.role("webpubsub.joinLeaveGroup.refused");
        }
        Ok(url.build())
    });
    let client = builder(credential).build().unwrap();
    let (tx, failures) = unbounded();
    client.on_rejoin_group_failed(move |group, error| {
        let _ = tx.send((group.to_owned(), error.clone()));
    });
    let events = client.events();
    let _with_client = client.start().unwrap();
    recv_until(&events, |e| matches!(e, Event::Connected { .. }));
    let first = client.connection_id().unwrap();
    client.join_group("client-joined").unwrap();
    client.join_group("refused").unwrap();
    assert!(hub.add_connection_to_group("server-added", &first));

    // The service ends the session: a new connection follows (auto-reconnect is on).
    assert!(hub.close_connection(&first, "bye"));
    let (group, error) = recv(&failures);
    assert_eq!(group, "refused");
    assert!(
        matches!(&error, Error::Ack(a) if a.name == "Forbidden"),
        "{error:?}"
    );
    recv_until(&events, |e| matches!(e, Event::Connected { .. }));
    let second = client.connection_id().unwrap();
    assert_ne!(second, first);
    assert_eq!(hub.group_members("client-joined"), [second]);
    assert!(hub.group_members("refused").is_empty());
    assert!(
        hub.group_members("server-added").is_empty(),
        "a group the server added is the server's to restore"
    );
    assert_eq!(client.joined_groups(), ["client-joined"]);
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[test]
fn step8_an_operation_retries_three_times_then_its_ack_id_makes_a_retry_deduplicated() {
    // B26, B25, B21: the same ack id on every try; the error carries it; a retry with it is
    // executed once.
    let _s = SERIAL.lock();
    let emu = Emulator::start().unwrap();
    let hub = emu.hub(HUB);
    let (bob, bob_received) = member(&emu, "bob", "group1");
    // The default policy's shape (3 retries, exponential), with short delays.
    let client = builder(url(&emu, "alice"))
        .message_retry(RetryPolicy::exponential(Duration::from_millis(10), 3))
        .build()
        .unwrap();
    let _with_client = client.start().unwrap();
    let conn = client.connection_id().unwrap();
    let obs = emu.observe();
    let is_send = |m: &ClientMessage| matches!(m, ClientMessage::SendToGroup { .. });

    // Every try fails (not executed, InternalServerError): 1 + 3 retries, one ack id.
    assert!(hub.fail_next_acks(&conn, 4));
    let err = client.send_to_group("group1", "one").unwrap_err();
    assert!(
        matches!(&err, Error::Ack(a) if a.name == "InternalServerError"),
        "{err:?}"
    );
    let ack_id = err.ack_id().expect("the error carries the ack id");
    let tries: Vec<Option<u64>> = requests(&obs, 4, is_send)
        .iter()
        .map(ClientMessage::ack_id)
        .collect();
    assert_eq!(tries, [Some(ack_id); 4]);

    // Calling again with that ack id: executed once; again: the service deduplicates.
    let again = RequestOptions::new().ack_id(ack_id);
    assert!(
        !client
            .send_to_group_with("group1", "one", &again)
            .unwrap()
            .duplicate
    );
    assert!(
        client
            .send_to_group_with("group1", "one", &again)
            .unwrap()
            .duplicate
    );

    // The ack of an executed request is lost with its connection: the recovered session
    // gets the same ack id again and answers `Duplicate`, which is success.
    assert!(hub.lose_next_ack(&conn));
    let outcome = client.send_to_group("group1", "two").unwrap();
    assert!(outcome.duplicate, "{outcome:?}");

    client.send_to_group("group1", "end").unwrap();
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("end") {
        got.push(
            bob_received
                .recv_deadline(deadline)
                .expect("bob's messages"),
        );
    }
    assert_eq!(got, ["one", "two", "end"], "each delivered exactly once");
    bob.stop();
}

/// A writer into a shared buffer, for env_logger's output.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn step9_one_environment_variable_turns_on_the_clients_debug_log() {
    // B37: what `RUST_LOG=webpubsub_client=debug` shows with env_logger, tokens redacted.
    let _s = SERIAL.lock();
    assert!(
        crate_docs().contains(&format!("RUST_LOG={DEBUG_FILTER}")),
        "the crate docs name the setting this test uses"
    );
    let out = Buffer::default();
    let logger = env_logger::Builder::new()
        .parse_filters(DEBUG_FILTER)
        .target(env_logger::Target::Pipe(Box::new(out.clone())))
        .build();
    log::set_max_level(logger.filter());
    log::set_boxed_logger(Box::new(logger)).expect("the only logger of this test binary");

    let emu = Emulator::start().unwrap();
    let url = url(&emu, "alice");
    let token = url.split("access_token=").nth(1).unwrap().to_owned();
    let client = builder(url.as_str()).build().unwrap();
    drop(client.start().unwrap());
    log::logger().flush();

    let text = String::from_utf8_lossy(&out.0.lock()).into_owned();
    let connecting = text
        .lines()
        .find(|l| l.contains("connecting to ws://127.0.0.1"))
        .unwrap_or_else(|| panic!("no connection attempt logged:\n{text}"));
    assert!(connecting.contains("DEBUG"), "{connecting}");
    assert!(
        connecting.contains(&format!("access_token={REDACTED}")),
        "{connecting}"
    );
    assert!(!text.contains(&token), "a token was logged");
    assert!(
        text.lines().all(|l| !l.contains("webpubsub_emulator")),
        "only the client's log is on"
    );
}
