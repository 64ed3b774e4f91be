//! A blocking, thread-based client for [Azure Web PubSub], for CLI tools, GUI applications
//! and services built on plain threads — no async runtime.
//!
//! [Azure Web PubSub]: https://learn.microsoft.com/azure/azure-web-pubsub/
//!
//! # Quick start
//!
//! ```no_run
//! use webpubsub_client::{Event, WebPubSubClient};
//!
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! // A client access URL, from your server (or the portal's "Client URL Generator").
//! let client = WebPubSubClient::new("wss://example.webpubsub.azure.com/client/hubs/chat?access_token=...")?;
//!
//! // Callbacks run on one dispatcher thread, in order.
//! client.on_group_message(|m| println!("[{}] {:?}", m.group, m.data));
//!
//! // Returns once the service says `connected`; dropping the guard stops the client.
//! let _guard = client.start()?;
//! client.join_group("room")?;                       // waits for the service's ack
//! client.send_to_group("room", "hello")?;           // text; serde_json::Value is json
//!
//! // Or read events as a stream, e.g. in a CLI loop or a GUI thread.
//! for event in client.events() {
//!     if let Event::Disconnected { close_code, .. } = event {
//!         println!("session over (close code {close_code:?})");
//!         break;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Threads and cloning
//!
//! [`WebPubSubClient`] is `Clone + Send + Sync`; clones share one connection, and every
//! operation takes `&self`. While started, a client runs exactly two threads:
//!
//! - `webpubsub-io` (module `io`): a mio readiness loop that dials, reads, writes,
//!   resolves acks, sends sequence acks and keep-alive pings, and runs recovery and reconnect.
//!   Requests reach the socket at once (the caller queues the frame and wakes the loop); an idle
//!   client sleeps in `poll`.
//! - `webpubsub-dispatch`: runs your callbacks, one event at a time, in order, then feeds the
//!   [`events()`](WebPubSubClient::events) receivers.
//!
//! Operations block the calling thread only. Because acks are resolved on the I/O thread, a
//! callback may call `join_group`, `send_to_group` or even `stop()` without deadlocking (a
//! `stop()` from a callback stops asynchronously). A panicking callback is logged and skipped.
//! Neither thread outlives [`stop()`](WebPubSubClient::stop), which also runs when the last clone
//! (or the [`StartGuard`]) is dropped. A callback that captures a clone of the client keeps it
//! alive: stop it explicitly or through the guard.
//!
//! To keep many requests in flight from one thread, use the `*_nowait` variants, which return
//! an [`AckHandle`] to wait on later.
//!
//! # Errors
//!
//! Every operation returns [`Result<T, Error>`](Error). The variants tell apart what a caller
//! can act on: [`Error::InvalidInput`] (a bug: bad URL, group name, payload over 1 MB),
//! [`Error::Connect`] (with the HTTP status of a refused upgrade, TLS, I/O, close code),
//! [`Error::Timeout`] (which one), [`Error::Ack`] (the service's error name, e.g. `Forbidden`),
//! [`Error::ConnectionLost`] (outcome unknown; carries the ack id so a retry stays idempotent),
//! [`Error::Stopped`] and [`Error::State`]. [`Error::is_retryable`] says whether trying again
//! may help. Requests already retry transient failures with the *same* ack id (see
//! [`WebPubSubClientBuilder::message_retry`]); a `Duplicate` answer counts as success
//! ([`AckOutcome::duplicate`]). No error, log line or `Debug` output contains a token.
//!
//! # Recovery and reconnect
//!
//! With the default reliable protocol, a dropped connection is *recovered*: the client reopens
//! the same session (every `recovery_retry_interval`, for at most `recovery_window`), keeps its
//! groups and its place in the message sequence, drops redelivered messages, and resends the
//! requests still waiting for acks with their ack ids (the service deduplicates). Requests made
//! meanwhile wait for the connection. No `connected` event fires for a recovery; the optional
//! `recovering`/`recovered` events mark the episode.
//!
//! If the session cannot be recovered (close code 1008, window over, or the plain JSON
//! protocol), `disconnected` fires, requests written to the lost session fail with
//! [`Error::ConnectionLost`], and — with `auto_reconnect` — a new connection is made (the
//! credential provider is called again), the client's groups are rejoined, and then
//! `connected` fires. Without `auto_reconnect`, the client stops and fires `stopped`.
//!
//! # Layout
//!
//! `client` (the handle and operations), `options` (builder, retry policies, credential),
//! `state` (the session state machine, pure), `acks` (the ack table and [`AckHandle`]),
//! `io` (the I/O thread), `transport` (non-blocking TCP/TLS/WebSocket dialing), `events`
//! (event types and the dispatcher), `endpoint` (access URLs and token redaction), `error`,
//! and [`protocol`] (the JSON codec shared with the emulator).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod acks;
mod client;
mod endpoint;
mod error;
mod events;
mod io;
mod options;
mod state;
mod transport;

pub mod protocol;

#[cfg(feature = "emulator")]
pub mod emulator;

pub use acks::{AckHandle, AckOutcome, RequestOptions};
pub use client::{StartGuard, WebPubSubClient};
pub use error::{AckFailure, ConnectError, Error, InvalidInput, Result, StateError, TimeoutKind};
pub use events::{Event, GroupMessage, ServerMessage, Subscription};
pub use options::{
    Credential, Protocol, ProviderError, RetryMode, RetryPolicy, WebPubSubClientBuilder,
};
pub use protocol::{Data, DataType};
pub use state::ClientState;

/// Re-exported so that TLS options can be given without a direct dependency.
pub use native_tls;

// The public types are usable from any thread.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<WebPubSubClient>();
    assert_send_sync::<StartGuard>();
    assert_send_sync::<AckHandle>();
    assert_send_sync::<Error>();
    assert_send_sync::<Event>();
    assert_send_sync::<Credential>();
    assert_send_sync::<WebPubSubClientBuilder>();
    assert_send_sync::<Subscription>();
};
