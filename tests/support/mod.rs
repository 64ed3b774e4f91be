//! Helpers shared by the client's integration tests (against the emulator on 127.0.0.1:0).
//! Every test file includes it with `mod support;`; what the other crates' tests need too (the
//! relay, the log capture, the thread counter, child processes) is in `webpubsub-testkit`.
//!
//! - this file: the emulator URL and client builder with test timings, bounded receives, and
//!   the protocol parameterisation: [`per_protocol!`] makes one `#[test]` per subprotocol
//!   for each behaviour (B42: every behaviour holds on all four);
//! - [`scripted_server`]: a scripted WebSocket "service" for hostile input.
#![allow(dead_code)]

pub mod pproxy;
pub mod scripted_server;

use crossbeam_channel::Receiver;
use std::time::{Duration, Instant};
use webpubsub_client::protocol::ClientMessage;
pub use webpubsub_client::Protocol;
use webpubsub_client::{Event, RetryPolicy, WebPubSubClient, WebPubSubClientBuilder};
use webpubsub_emulator::{Emulator, Observation};

/// The bound of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);
pub const HUB: &str = "hub";

pub fn init_log() {
    let _ = env_logger::builder()
        .is_test(true)
        .format_timestamp_micros()
        .try_init();
}

/// A client access URL with the roles to join, leave and publish.
pub fn url(emu: &Emulator, user: &str) -> String {
    emu.client_url(HUB)
        .user_id(user)
        .role("webpubsub.joinLeaveGroup")
        .role("webpubsub.sendToGroup")
        .build()
}

/// A builder with small timings so that tests are fast.
///
/// Direct connections: a proxy named in the environment of the machine running the tests
/// must not carry the loopback traffic to the emulator (the proxy tests name theirs).
pub fn builder(url: impl Into<webpubsub_client::Credential>) -> WebPubSubClientBuilder {
    WebPubSubClient::builder(url)
        .no_proxy()
        .start_timeout(Duration::from_secs(5))
        .ack_timeout(Duration::from_secs(5))
        .recovery_window(Duration::from_secs(3))
        .recovery_retry_interval(Duration::from_millis(50))
        .reconnect_retry(RetryPolicy::fixed(Duration::from_millis(50), 40))
        .message_retry(RetryPolicy::fixed(Duration::from_millis(20), 3))
}

/// A started client (detached from its guard: stopped by `drop`).
pub fn started(emu: &Emulator, user: &str) -> WebPubSubClient {
    started_with(emu, user, Protocol::default())
}

/// A started client speaking `protocol`.
pub fn started_with(emu: &Emulator, user: &str, protocol: Protocol) -> WebPubSubClient {
    init_log();
    start(builder(url(emu, user)).protocol(protocol).build().unwrap())
}

/// Makes one `#[test]` per subprotocol for each function (B42): `fn name(p: Protocol)
/// { … }` becomes the module `name` with the tests `json_reliable`, `json`,
/// `protobuf_reliable` and `protobuf`, each calling the body with its protocol. Begin the
/// list with `reliable;` for behaviours of the reliable protocols only (recovery), or with
/// `plain;` for those of the others (a drop is a new connection).
#[macro_export]
macro_rules! per_protocol {
    (reliable; $($(#[$meta:meta])* fn $name:ident($p:ident: Protocol) $body:block)*) => {
        $( $crate::per_protocol!(@one [json_reliable JsonReliable] [protobuf_reliable ProtobufReliable]
            $(#[$meta])* fn $name($p) $body); )*
    };
    (plain; $($(#[$meta:meta])* fn $name:ident($p:ident: Protocol) $body:block)*) => {
        $( $crate::per_protocol!(@one [json Json] [protobuf Protobuf]
            $(#[$meta])* fn $name($p) $body); )*
    };
    (@one [$($json:ident $jv:ident),*] [$($pb:ident $pv:ident),*]
        $(#[$meta:meta])* fn $name:ident($p:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn with_protocol($p: $crate::support::Protocol) $body

            $(
                #[test]
                fn $json() {
                    with_protocol($crate::support::Protocol::$jv)
                }
            )*
            $(
                #[test]
                fn $pb() {
                    with_protocol($crate::support::Protocol::$pv)
                }
            )*
        }
    };
    ($($(#[$meta:meta])* fn $name:ident($p:ident: Protocol) $body:block)*) => {
        $( $crate::per_protocol!(@one [json_reliable JsonReliable, json Json]
            [protobuf_reliable ProtobufReliable, protobuf Protobuf]
            $(#[$meta])* fn $name($p) $body); )*
    };
}

/// Starts `client` and waits until its `Connected` event was dispatched, so that receivers
/// made afterwards do not see it.
pub fn start(client: WebPubSubClient) -> WebPubSubClient {
    let events = client.events();
    let client = client.start().unwrap().detach();
    recv_until(&events, is_connected);
    client
}

/// Receives until `pred` matches; panics after `WAIT`.
pub fn recv_until<T: std::fmt::Debug>(rx: &Receiver<T>, mut pred: impl FnMut(&T) -> bool) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match rx.recv_deadline(deadline) {
            Ok(v) if pred(&v) => return v,
            Ok(_) => {}
            Err(e) => panic!("nothing matched within {WAIT:?}: {e}"),
        }
    }
}

/// Receives the next item; panics after `WAIT`.
pub fn recv<T>(rx: &Receiver<T>) -> T {
    rx.recv_timeout(WAIT).expect("nothing arrived in time")
}

/// Asserts that nothing matching `pred` arrives within `d`.
pub fn assert_none_within<T: std::fmt::Debug>(
    rx: &Receiver<T>,
    d: Duration,
    mut pred: impl FnMut(&T) -> bool,
) {
    let deadline = Instant::now() + d;
    while let Ok(v) = rx.recv_deadline(deadline) {
        assert!(!pred(&v), "unexpected: {v:?}");
    }
}

/// The next request of `kind` (`joinGroup`, `sendToGroup`, ...) the emulator handled.
pub fn next_request(
    obs: &Receiver<Observation>,
    pred: impl Fn(&ClientMessage) -> bool,
) -> ClientMessage {
    match recv_until(
        obs,
        |o| matches!(o, Observation::Request { message, .. } if pred(message)),
    ) {
        Observation::Request { message, .. } => message,
        _ => unreachable!(),
    }
}

pub fn is_connected(e: &Event) -> bool {
    matches!(e, Event::Connected { .. })
}

/// The names of the client's threads as the kernel keeps them (15 bytes).
pub const CLIENT_THREADS: [&str; 2] = ["webpubsub-io", "webpubsub-dispa"];

/// The client's threads alive now.
pub fn client_threads() -> usize {
    webpubsub_testkit::process::count_threads(&CLIENT_THREADS)
}

/// Asserts that the client's thread count reaches `n` within a second. `join()` returns when
/// the kernel clears the thread's tid, a moment before the task leaves `/proc/self/task`; and
/// a thread just spawned carries its creator's name until it runs and names itself (`start()`
/// may return before the dispatcher ran). This bounded re-check covers only those windows.
pub fn assert_client_threads(n: usize) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let now = client_threads();
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} client threads, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The application server's REST send to one connection, with message metadata as
/// `X-WebPubSub-Metadata-<key>` headers (PROTOCOL.md §10, §11), through a real HTTP client.
pub fn rest_send_to_connection(
    emu: &Emulator,
    connection_id: &str,
    text: &str,
    metadata: &[(&str, &str)],
) {
    let path = format!("/api/hubs/{HUB}/connections/{connection_id}/:send");
    let url = format!("{}{path}", emu.endpoint());
    let token = webpubsub_emulator::rest_token(emu.access_key(), &url, Duration::from_secs(60));
    let mut req = ureq::post(format!("{url}?api-version=2024-12-01"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "text/plain");
    for (k, v) in metadata {
        req = req.header(format!("X-WebPubSub-Metadata-{k}"), *v);
    }
    let resp = req.send(text).expect("the REST send");
    assert_eq!(resp.status().as_u16(), 202);
}
