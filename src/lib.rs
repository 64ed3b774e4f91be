//! A blocking, thread-based client for [Azure Web PubSub], for CLI tools, GUI applications
//! and services built on plain threads — no async runtime.
//!
//! [Azure Web PubSub]: https://learn.microsoft.com/azure/azure-web-pubsub/
//!
//! It speaks the four Web PubSub subprotocols — JSON and protobuf, each plain or reliable —
//! with acks, recovery without loss, request/response with your event handler
//! ([`invoke_event`](WebPubSubClient::invoke_event)) and message metadata.
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
//! # Getting started, step by step
//!
//! The steps of the official Python client's getting-started guide, in the same order, in
//! Rust. Each step has a test that runs it against the emulator (`tests/getting_started.rs`).
//!
//! ## 1. Install the package
//!
//! ```sh
//! cargo add webpubsub-client
//! ```
//!
//! ## 2. Connect with your Web PubSub resource
//!
//! A client connects with a *client access URL*:
//! `wss://<service_name>.webpubsub.azure.com/client/hubs/<hub_name>?access_token=<token>`
//! (for a first try, copy one from the portal's "Client URL Generator"). Python's
//! `with client:` is the guard that [`start()`](WebPubSubClient::start) returns: the client is
//! connected while it lives and stopped when it is dropped.
//!
//! ```no_run
//! use webpubsub_client::WebPubSubClient;
//!
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! let client = WebPubSubClient::new("<client-access-url>")?;
//! {
//!     let _with_client = client.start()?; // returns once the service says `connected`
//!     // The client can join and leave groups, send and receive messages, in real time.
//! } // the guard is dropped: the client stops
//! # Ok(()) }
//! ```
//!
//! ## 3. Join groups
//!
//! A client receives messages only from groups it joined. Register the `group-message`
//! listener *before* joining, so that no message is missed:
//!
//! ```no_run
//! # use webpubsub_client::WebPubSubClient;
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! # let client = WebPubSubClient::new("wss://h/client/hubs/chat?access_token=t")?;
//! # let _with_client = client.start()?;
//! client.on_group_message(|m| println!("Received message: {:?}", m.data));
//! // Join the group to receive its messages; waits for the service's ack.
//! client.join_group("group1")?;
//! # Ok(()) }
//! ```
//!
//! ## 4. Send messages to a group
//!
//! ```no_run
//! # use webpubsub_client::WebPubSubClient;
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! # let client = WebPubSubClient::new("wss://h/client/hubs/chat?access_token=t")?;
//! # let _with_client = client.start()?;
//! client.send_to_group("group1", "Hello World")?; // text; a serde_json::Value is json
//! # Ok(()) }
//! ```
//!
//! ## 5. Handle the connected, disconnected and stopped events
//!
//! `connected` fires for every new connection, `disconnected` when a connection session is
//! over (with the service's reason and the close code), `stopped` when the client stopped.
//! A client stops by itself when its session is lost and it may not reconnect
//! ([`auto_reconnect(false)`](WebPubSubClientBuilder::auto_reconnect), or a
//! [`reconnect_retry`](WebPubSubClientBuilder::reconnect_retry) policy that gave up). To
//! restart it, call `start()` in the `stopped` callback, as in Python: there it blocks the
//! callback until the new connection is ready (the next callbacks wait), and returns the
//! guard — detach it to keep the client running after the callback.
//!
//! ```no_run
//! use webpubsub_client::WebPubSubClient;
//!
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! let client = WebPubSubClient::builder("<client-access-url>")
//!     .auto_reconnect(false)
//!     .build()?;
//! client.on_connected(|connection_id, _user_id| println!("{connection_id} is connected"));
//! client.on_disconnected(|connection_id, message, _close_code| {
//!     println!("{connection_id:?} is disconnected: {message:?}")
//! });
//! let restart = client.clone();
//! client.on_stopped(move || match restart.start() {
//!     Ok(guard) => {
//!         guard.detach(); // running until `client.stop()`
//!     }
//!     Err(e) => eprintln!("could not restart: {e}"),
//! });
//! let _with_client = client.start()?;
//! # Ok(()) }
//! ```
//!
//! The callback holds a clone of the client, which keeps it alive; a stop you ask for from
//! another thread ([`stop()`](WebPubSubClient::stop), or dropping the guard) is final: the
//! `start()` in the `stopped` callback it fires returns [`StateError::Stopping`], and `stop()`
//! returns once every thread ended.
//!
//! ## 6. Consume messages from the server and from groups
//!
//! ```no_run
//! # use webpubsub_client::WebPubSubClient;
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! # let client = WebPubSubClient::new("wss://h/client/hubs/chat?access_token=t")?;
//! client.on_server_message(|m| println!("Received message from the server: {:?}", m.data));
//! // Only messages of groups this client joined arrive.
//! client.on_group_message(|m| println!("Received message from {}: {:?}", m.group, m.data));
//! # Ok(()) }
//! ```
//!
//! The same events can be read from a [`Receiver`](crossbeam_channel::Receiver) instead:
//! [`events()`](WebPubSubClient::events).
//!
//! ## 7. Handle rejoin failure
//!
//! After a new connection, the client rejoins the groups it joined
//! ([`auto_rejoin_groups`](WebPubSubClientBuilder::auto_rejoin_groups), on by default) — not
//! the groups the server added it to, which are the server's to restore. A rejoin the
//! service refuses raises `rejoin-group-failed` with the group and the error:
//!
//! ```no_run
//! # use webpubsub_client::WebPubSubClient;
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! let client = WebPubSubClient::builder("<client-access-url>")
//!     .auto_rejoin_groups(true) // the default
//!     .build()?;
//! client.on_rejoin_group_failed(|group, error| eprintln!("Restore group {group} failed: {error}"));
//! # Ok(()) }
//! ```
//!
//! ## 8. Operations and retries
//!
//! `join_group`, `leave_group`, `send_to_group` and `send_event` retry transient failures
//! three times by default, with the *same* ack id each time, so that the service executes
//! the request once ([`message_retry`](WebPubSubClientBuilder::message_retry) changes the
//! policy). When every try failed, the error carries the ack id; calling again with it lets
//! the service deduplicate within the connection session (a `Duplicate` answer is success,
//! with [`AckOutcome::duplicate`] set):
//!
//! ```no_run
//! use std::time::Duration;
//! use webpubsub_client::{RequestOptions, RetryPolicy, WebPubSubClient};
//!
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! let client = WebPubSubClient::builder("<client-access-url>")
//!     .message_retry(RetryPolicy::exponential(Duration::from_millis(800), 3)) // the default
//!     .build()?;
//! # let _with_client = client.start()?;
//! match client.send_to_group("group1", "important") {
//!     Ok(_) => {}
//!     Err(e) if e.is_retryable() => {
//!         let mut options = RequestOptions::new();
//!         if let Some(ack_id) = e.ack_id() {
//!             options = options.ack_id(ack_id);
//!         }
//!         let outcome = client.send_to_group_with("group1", "important", &options)?;
//!         println!("delivered (already before: {})", outcome.duplicate);
//!     }
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
//!
//! ## 9. Troubleshooting: enable logs
//!
//! The crate logs through the [`log`](https://docs.rs/log) facade. With `env_logger`
//! installed at the start of `main`, one environment variable turns on the client's verbose
//! log: `RUST_LOG=webpubsub_client=debug` (connection attempts, drops, recoveries and their
//! causes; tokens are redacted). See [Logging](#logging) for the levels.
//!
//! ```no_run
//! // In `main`, before anything else; then run with `RUST_LOG=webpubsub_client=debug`.
//! env_logger::init();
//! ```
//!
//! # Threads and cloning
//!
//! [`WebPubSubClient`] is `Clone + Send + Sync`; clones share one connection, and every
//! operation takes `&self`. While started, a client runs exactly two threads (none of its
//! own on a shared [`Runtime`]: see [Many clients in one process](#many-clients-in-one-process)):
//!
//! - `webpubsub-io` (modules `runtime` and `io`): a mio readiness loop that dials, reads,
//!   writes, resolves acks, sends sequence acks and keep-alive pings, and runs recovery and
//!   reconnect. Requests reach the socket at once (the caller queues the frame and wakes the
//!   loop); an idle client sleeps in `poll`.
//! - `webpubsub-dispatch`: takes one event at a time, in order: it feeds the
//!   [`events()`](WebPubSubClient::events) receivers, then runs your callbacks (receivers
//!   first, so that a callback that wakes a GUI finds the event already there).
//!
//! Operations block the calling thread only. Because acks are resolved on the I/O thread, a
//! callback may call `join_group`, `send_to_group` or even `stop()` without deadlocking (a
//! `stop()` from a callback stops asynchronously), and `start()` to restart a stopped client
//! (see step 5 above). A panicking callback is logged and skipped.
//! Neither thread outlives [`stop()`](WebPubSubClient::stop), which also runs when the last clone
//! (or the [`StartGuard`]) is dropped. A callback that captures a clone of the client keeps it
//! alive: stop it explicitly or through the guard.
//!
//! Memory stays bounded when messages arrive faster than they are consumed: past
//! [`max_event_backlog`](WebPubSubClientBuilder::max_event_backlog) waiting events the I/O
//! thread stops reading the socket until the callbacks and receivers catch up. And an idle
//! client holds little (B45): every read goes into one buffer of the I/O loop, a connection
//! keeps bytes only for a frame that is not complete yet or output the socket has not taken,
//! and buffers a burst of large messages grew are let go once it has passed. The threads
//! have small stacks (256 KiB for the I/O thread, 1 MiB for the dispatcher, where your
//! callbacks run: [`dispatcher_stack_size`](WebPubSubClientBuilder::dispatcher_stack_size)
//! raises it); only the pages a thread touches count in the process's memory.
//!
//! To keep many requests in flight from one thread, use the `*_nowait` variants, which return
//! an [`AckHandle`] to wait on later (or an [`InvokeHandle`] for an invocation). A wait can be
//! stopped from another thread: [`AckHandle::canceller`], [`InvokeHandle::cancel`].
//!
//! # Errors
//!
//! Every operation returns [`Result<T, Error>`](Error). The variants tell apart what a caller
//! can act on: [`Error::InvalidInput`] (a bug: bad URL, group name, payload over 1 MB),
//! [`Error::Connect`] (with the HTTP status of a refused upgrade, TLS, I/O, WebSocket, close
//! code, or the proxy's failure: [`ConnectError::Proxy`]), [`Error::Timeout`] (which one: [`TimeoutKind`]), [`Error::Ack`] (the service's
//! error name, e.g. `Forbidden`), [`Error::ConnectionLost`] (outcome unknown; carries the ack
//! id so a retry stays idempotent), [`Error::Stopped`] and [`Error::State`]; for invocations,
//! [`Error::Invoke`] (the event handler failed: the service's error name and message),
//! [`Error::InvocationLost`] (the connection dropped: outcome unknown) and
//! [`TimeoutKind::Invoke`]; and [`Error::Cancelled`] when a caller stopped a wait (outcome
//! unknown). Where a lower
//! layer failed (an I/O, TLS or WebSocket error, your credential provider's error), the error
//! keeps it as its [`source()`](std::error::Error::source), as a [`Cause`] you can downcast.
//! [`Error::is_retryable`] says whether trying again may help and is safe; it is also the rule
//! of the client's own retries. It is never true for an invocation: nothing deduplicates one,
//! so trying again may run the event handler twice (B40) — that decision is yours. Requests retry transient failures with the *same* ack id (see
//! [`WebPubSubClientBuilder::message_retry`]); a `Duplicate` answer counts as success
//! ([`AckOutcome::duplicate`]). No error, log line or `Debug` output contains a token.
//!
//! # Recovery and reconnect
//!
//! With the default reliable protocol, a dropped connection is *recovered*: the client reopens
//! the same session, keeps its groups and its place in the message sequence, drops redelivered
//! messages, and resends the requests still waiting for acks with their ack ids (the service
//! deduplicates). Requests made meanwhile wait for the connection. No `connected` event fires
//! for a recovery; the optional `recovering`/`recovered` events mark the episode.
//!
//! The first recovery attempt follows the drop at once. A failed attempt is tried again after
//! 5 ms, then 10 ms, 20 ms, 40 ms, … doubling up to
//! [`recovery_retry_interval`](WebPubSubClientBuilder::recovery_retry_interval) (1 s by
//! default), for at most [`recovery_window`](WebPubSubClientBuilder::recovery_window) (30 s);
//! each pause counts from the start of the attempt it follows (B46). So a cut during a
//! recovery's own handshake costs milliseconds, while a service that stays away is tried about
//! once per interval. (A fixed one-second pause, as the protocol's reference describes, made
//! such a cut cost a second: `tests/chaos.rs` prints the worst acked send.)
//!
//! Invocations are the exception: an invocation written to a connection that drops fails with
//! [`Error::InvocationLost`], even when the session is recovered, and is never resent (B40).
//!
//! If the session cannot be recovered (close code 1008, window over, or the plain JSON
//! protocol), `disconnected` fires, requests written to the lost session fail with
//! [`Error::ConnectionLost`], and — with `auto_reconnect` — a new connection is made (the
//! credential provider is called again), the client's groups are rejoined, and then
//! `connected` fires. Without `auto_reconnect`, the client stops and fires `stopped`.
//!
//! Delivery guarantees follow from this: within a session — across any number of
//! recoveries — every acknowledged request is executed exactly once and every message is
//! delivered once, in order. When a session is lost, the service forgets it: messages sent
//! meanwhile are not delivered to this client, and a request whose outcome was unknown
//! ([`Error::ConnectionLost`]) and is retried on the new session may be executed twice.
//!
//! # Guide
//!
//! ## Connect
//!
//! A client needs a *client access URL*: `wss://<host>/client/hubs/<hub>?access_token=<jwt>`.
//! Your application server makes it (the server SDKs' `get_client_access_token`), so a
//! long-running client usually takes a provider, called for every new connection, rather than a
//! fixed URL whose token expires:
//!
//! ```no_run
//! use std::time::Duration;
//! use webpubsub_client::{Credential, Protocol, RetryPolicy, WebPubSubClient};
//!
//! # fn fetch_url_from_my_server() -> Result<String, std::io::Error> { unimplemented!() }
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! let client = WebPubSubClient::builder(Credential::from_fn(|| Ok(fetch_url_from_my_server()?)))
//!     .protocol(Protocol::JsonReliable)                 // the default; `Protocol::Json` has no recovery
//!     .ack_timeout(Duration::from_secs(10))
//!     .message_retry(RetryPolicy::exponential(Duration::from_millis(800), 3))
//!     .build()?;
//! let _running = client.start()?;
//! # Ok(()) }
//! ```
//!
//! ## Proxies
//!
//! Where the internet is reached only through an HTTP proxy, the client opens a tunnel with
//! `CONNECT host:port` and runs the WebSocket through it — for `wss://`, TLS first, to the
//! service: the certificate is checked against the service's host name, never the proxy's.
//! Every connection takes the proxy: the first one, each recovery and each reconnect (the
//! proxy is chosen for each connection from its URL).
//!
//! **By default the environment names the proxy**, with the conventions of curl, reqwest and
//! ureq, read when the builder is made:
//!
//! | connection | variables, the first one set wins |
//! |---|---|
//! | `wss://` | `https_proxy`, `HTTPS_PROXY`, then `all_proxy`, `ALL_PROXY` |
//! | `ws://` | `http_proxy`, `HTTP_PROXY`, then `all_proxy`, `ALL_PROXY` |
//! | no proxy for these hosts | `no_proxy`, `NO_PROXY` |
//!
//! Lower case wins over upper case; an empty value counts as unset. In a CGI program
//! (`REQUEST_METHOD` set) `HTTP_PROXY` is ignored, because there it comes from the request's
//! `Proxy:` header. A value without a scheme (`proxy.corp:3128`) is an `http://` proxy; the
//! port defaults to 80. `NO_PROXY` is a comma-separated list of:
//!
//! - `*`: no proxy for any host;
//! - a domain, with or without a leading dot (`example.com`, `.example.com`, `*.example.com`):
//!   that domain and all its subdomains (`a.example.com`; not `notexample.com`);
//! - an IP address (`10.1.2.3`, `::1`, `[::1]`) or a CIDR range (`10.0.0.0/8`, `fd00::/8`):
//!   URLs whose host is such an address (host names are not resolved to match them).
//!
//! Ports in the list are ignored (`example.com:8443` is `example.com`), matching ignores case,
//! and unreadable entries are skipped. As with curl, `localhost` and `127.0.0.1` go through the
//! proxy unless `NO_PROXY` names them.
//!
//! **To name the proxy** in code, whatever the environment says, give a [`Proxy`]; credentials
//! go in its URL (percent-encoded; sent as `Proxy-Authorization: Basic`). **To turn the
//! environment off**, call [`no_proxy`](WebPubSubClientBuilder::no_proxy). To take the same
//! variables from your own settings instead of the process environment, use
//! [`proxy_env`](WebPubSubClientBuilder::proxy_env).
//!
//! ```no_run
//! use webpubsub_client::{Proxy, WebPubSubClient};
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! # let url = "wss://example.com/client/hubs/chat?access_token=t";
//! let through = WebPubSubClient::builder(url)
//!     .proxy(Proxy::new("http://alice:s%40cret@proxy.corp:3128")?)
//!     .build()?;
//! let direct = WebPubSubClient::builder(url).no_proxy().build()?;
//! # Ok(()) }
//! ```
//!
//! Only HTTP proxies are supported: `https://` and `socks5://` proxy URLs are refused by
//! [`Proxy::new`] with [`InvalidInput::Proxy`], and at `start()` with
//! [`ProxyErrorKind::UnsupportedScheme`] when the environment names one. The proxy's password
//! never appears in logs, `Debug` output or errors.
//!
//! **A proxy's failure is its own error**, [`ConnectError::Proxy`], naming the proxy
//! (`host:port`) and what it did — [`ProxyErrorKind::Status`] with the status it answered
//! (407: credentials, 403: its policy, 502: it could not reach the service), `Io` (it could
//! not be reached), `Closed`, `Malformed` — never confused with the service's refusals
//! ([`ConnectError::Http`], [`Error::http_status`]). What the client does with it:
//!
//! - at `start()`, as with any failure of the first connection, `start()` returns it;
//! - during a recovery or a reconnect, a transient failure ([`ProxyError::is_retryable`]: the
//!   proxy unreachable or restarting, a closed connection, 408, 429, 5xx) is retried like any
//!   network failure, within the recovery window and the reconnect policy: a proxy that
//!   restarts is recovered through without losing the session;
//! - a final refusal (407, 403 and other 4xx, a malformed answer, an unusable proxy URL) is
//!   not retried: neither another attempt nor a fresh token from the credential provider can
//!   change it, and repeating bad credentials can lock the proxy account. The client logs it
//!   at `warn` and stops as when retries are exhausted: `disconnected` (unless it fired already
//!   for the lost session), then `stopped`; waiting requests fail with [`Error::Stopped`].
//!
//! ## Join, send, and pipeline
//!
//! Every request blocks until the service acknowledges it and returns an [`AckOutcome`]. The
//! payload is anything that converts into [`Data`]: `&str`/`String` (text),
//! `serde_json::Value` or [`Data::json`] (json), `Vec<u8>`/`&[u8]` (binary),
//! [`Data::Protobuf`].
//!
//! ```no_run
//! # use webpubsub_client::{Data, RequestOptions, WebPubSubClient};
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! # let client = WebPubSubClient::new("wss://h/client/hubs/chat?access_token=t")?;
//! client.join_group("room")?;
//! client.send_to_group("room", "text")?;
//! client.send_to_group("room", serde_json::json!({"kind": "json"}))?;
//! client.send_to_group("room", vec![0u8, 1, 2])?;
//! client.send_event("telemetry", Data::json(&[1, 2, 3]).expect("serialisable"))?;
//!
//! // Options: no echo to this connection, a per-call timeout, or no ack at all.
//! client.send_to_group_with("room", "quiet", &RequestOptions::new().no_echo(true))?;
//!
//! // Many requests in flight from one thread: send now, wait later.
//! let handles = (0..1000)
//!     .map(|i| client.send_to_group_nowait("room", format!("#{i}"), &RequestOptions::new()))
//!     .collect::<Result<Vec<_>, _>>()?;
//! for handle in handles {
//!     handle.wait()?;
//! }
//! # Ok(()) }
//! ```
//!
//! ## Invoke the event handler (request/response)
//!
//! [`invoke_event`](WebPubSubClient::invoke_event) sends an `invoke` to your application
//! server's event handler and waits for its answer (B38): an [`InvokeResponse`] with the
//! handler's data (if any), its data type and its metadata. Every wait is bounded, by the ack
//! timeout unless [`InvokeOptions::timeout`] says otherwise. A failure is a typed error:
//! [`Error::Invoke`] with the service's error name (`InvocationFailed`) and the handler's
//! message, [`TimeoutKind::Invoke`], or [`Error::InvocationLost`] when the connection
//! dropped meanwhile. Invocations are never retried or resent (B40): the handler's side
//! effects are yours to reason about. Invocation ids count from 1 and never repeat within a
//! client's life, across reconnects and restarts.
//!
//! ```
//! use webpubsub_client::{Data, Error, WebPubSubClient};
//! use webpubsub_emulator::{Emulator, EventResponse};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The emulator plays your application server: its handler adds numbers.
//! let emu = Emulator::builder()
//!     .event_handler(|req| match (req.event.as_str(), req.data.as_json()) {
//!         ("add", Some(serde_json::Value::Array(xs))) => {
//!             let sum: i64 = xs.iter().filter_map(|x| x.as_i64()).sum();
//!             EventResponse::Reply(Data::from(serde_json::json!(sum)))
//!         }
//!         _ => EventResponse::Fail("I only add".into()),
//!     })
//!     .start()?;
//! let client = WebPubSubClient::new(&emu.client_url("chat").build())?;
//! let _running = client.start()?;
//!
//! let answer = client.invoke_event("add", serde_json::json!([1, 2, 3]))?;
//! assert_eq!(answer.data, Some(Data::from(serde_json::json!(6))));
//!
//! match client.invoke_event("multiply", serde_json::json!([2, 3])) {
//!     Err(Error::Invoke(failure)) => {
//!         assert_eq!(failure.name, "InvocationFailed");
//!         assert_eq!(failure.message, "I only add");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! **Cancelling** (B39): [`invoke_event_nowait`](WebPubSubClient::invoke_event_nowait)
//! returns an [`InvokeHandle`]; a clone of it can cancel from any thread — a GUI's cancel
//! button while a worker waits. The waiter returns [`Error::Cancelled`] at once, the client
//! sends `cancelInvocation`, and a late response is dropped. A timeout cancels the same way.
//! **Dropping the last clone of a pending handle cancels it too** (nobody can receive the
//! answer); to have the handler run without waiting, send an event instead.
//!
//! ```no_run
//! # use webpubsub_client::{Error, InvokeOptions, WebPubSubClient};
//! # fn main() -> Result<(), Error> {
//! # let client = WebPubSubClient::new("wss://h/client/hubs/chat?access_token=t")?;
//! let handle = client.invoke_event_nowait("report", "2026-Q4", &InvokeOptions::new())?;
//! let cancel_button = handle.clone();
//! let worker = std::thread::spawn(move || handle.wait());
//! cancel_button.cancel(); // the user changed their mind
//! match worker.join().unwrap() {
//!     Err(Error::Cancelled(_)) => println!("cancelled; the handler may still have run"),
//!     Ok(report) => println!("it was faster: {:?}", report.data),
//!     Err(e) => println!("{e}"),
//! }
//! # Ok(()) }
//! ```
//!
//! An acked request's wait can be stopped the same way ([`AckHandle::canceller`]): the
//! waiter returns [`Error::Cancelled`], whose text says the outcome is unknown.
//!
//! ## Metadata and time to live
//!
//! A `send_to_group`, a `send_event` and an invocation can carry [`Metadata`] — string keys to
//! string values, such as a trace id — and a `send_to_group` a time to live in seconds, after
//! which the service may drop the message for a receiver that has not got it (B41):
//! [`RequestOptions::metadata`], [`RequestOptions::ttl_seconds`], [`InvokeOptions::metadata`].
//! Received [`GroupMessage`]s, [`ServerMessage`]s and [`InvokeResponse`]s expose the
//! publisher's metadata. The service's limits are checked before anything is sent, each a
//! typed [`InvalidInput::Rule`] carrying the protocol's [`RuleError`](protocol::RuleError):
//! keys of 1 to 256 HTTP token characters (letters, digits, ``!#$%&'*+-.^_`|~``), values of
//! at most 1024 bytes of printable ASCII, 8 KiB in all, a time to live of 0 to 300 s.
//! Joins and leaves carry neither ([`InvalidInput::Options`]).
//!
//! ```no_run
//! use webpubsub_client::{Metadata, RequestOptions, WebPubSubClient};
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! # let client = WebPubSubClient::new("wss://h/client/hubs/chat?access_token=t")?;
//! let options = RequestOptions::new()
//!     .metadata(Metadata::new().with("trace-id", "4bf92f35"))
//!     .ttl_seconds(60);
//! client.send_to_group_with("room", "hello", &options)?;
//! client.on_group_message(|m| {
//!     if let Some(trace) = m.metadata.get("trace-id") {
//!         println!("{trace}: {:?}", m.data);
//!     }
//! });
//! # Ok(()) }
//! ```
//!
//! ## Events
//!
//! Callbacks run on the dispatcher thread, in the order things happened. The same events can be
//! read from [`WebPubSubClient::events`] by a loop or a GUI thread.
//!
//! ```no_run
//! # use webpubsub_client::{Event, WebPubSubClient};
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! # let client = WebPubSubClient::new("wss://h/client/hubs/chat?access_token=t")?;
//! client.on_connected(|connection_id, user_id| println!("connected {connection_id} {user_id:?}"));
//! client.on_server_message(|m| println!("from the server: {:?}", m.data));
//! // A group the client had joined could not be rejoined after a new connection.
//! client.on_rejoin_group_failed(|group, error| eprintln!("lost group {group}: {error}"));
//! let subscription = client.on_group_message(|m| println!("{}: {:?}", m.group, m.data));
//! subscription.remove(); // handlers stay until removed
//!
//! let events = client.events();
//! let _running = client.start()?;
//! while let Ok(event) = events.recv() {
//!     match event {
//!         Event::GroupMessage(m) => println!("{:?}", m.data),
//!         Event::Stopped => break,
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! ## In a GUI or TUI
//!
//! A UI thread must never wait for the network. Two examples show how to hold the client in
//! an interactive program: `examples/terminal-chat` (a full-screen terminal chat, ratatui) and
//! `examples/desktop` (a chat window, eframe/egui). They follow three rules:
//!
//! 1. **Never block the UI thread on a request.** Make requests with the `*_nowait`
//!    operations, which only queue them, and hand the [`AckHandle`]s to a worker thread that
//!    waits on them and posts each outcome back to the UI. [`start()`](WebPubSubClient::start)
//!    waits for the service: call it on that thread too.
//! 2. **Wake the UI from a callback.** A toolkit that draws only when asked (egui's
//!    `request_repaint`, an event loop's wake-up) is woken by a callback. The dispatcher feeds
//!    the [`events()`](WebPubSubClient::events) receivers before it runs the callbacks, so the
//!    UI finds the event that woke it. Keep the callback short: `stop()` waits for the
//!    dispatcher. A terminal program that owns its loop can instead wait on `events()`, its
//!    key reader's channel and the worker's in one `crossbeam_channel::select!`.
//! 3. **Drain the receiver on the UI thread.** Each time the UI wakes, take everything
//!    waiting with `try_recv`, then draw once. No timer, no polling.
//!
//! ```no_run
//! use webpubsub_client::{AckHandle, RequestOptions, WebPubSubClient};
//! # fn request_repaint() {}
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! # let client = WebPubSubClient::new("wss://h/client/hubs/chat?access_token=t")?;
//! // Rule 2: the receiver has the event before the callback wakes the UI
//! // (`request_repaint` stands for the toolkit's wake-up).
//! let events = client.events();
//! client.on_event(|_| request_repaint());
//!
//! // Rule 1: the UI thread queues the request; a worker waits for its ack.
//! let (jobs, queue) = crossbeam_channel::unbounded::<AckHandle>();
//! std::thread::spawn(move || {
//!     for handle in queue {
//!         let _outcome = handle.wait(); // post it to the UI's channel, then wake the UI
//!     }
//! });
//! let _ = jobs.send(client.send_to_group_nowait("room", "hi", &RequestOptions::new())?);
//!
//! // Rule 3, in each frame: take in what happened, then draw.
//! while let Ok(event) = events.try_recv() {
//!     println!("{event:?}"); // update the UI's model
//! }
//! # Ok(()) }
//! ```
//!
//! ## Many clients in one process
//!
//! Load generators, bot farms, device simulators and gateways that hold a connection per
//! user run hundreds or thousands of clients. On its own a client costs two threads; on a
//! shared [`Runtime`] any number of clients run on two threads in all (B44):
//!
//! ```no_run
//! use webpubsub_client::{Runtime, WebPubSubClient};
//!
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! # let urls: Vec<String> = Vec::new();
//! let runtime = Runtime::builder().thread_name("sim").build(); // sim-io, sim-dispatch
//! let mut clients = Vec::new();
//! for url in &urls {
//!     let client = WebPubSubClient::builder(url.as_str()).runtime(&runtime).build()?;
//!     client.on_server_message(|m| println!("{:?}", m.data));
//!     client.start()?.detach();
//!     clients.push(client);
//! }
//! // ... later: dropping the clients stops them; dropping the runtime too ends its threads.
//! # Ok(()) }
//! ```
//!
//! - **What is shared**: one I/O thread with one readiness loop over every client's socket
//!   (and one read buffer for all of them), and one dispatcher thread that feeds every
//!   client's [`events()`](WebPubSubClient::events) receivers and runs every client's
//!   callbacks.
//! - **What stays each client's own**: its connection and session, recovery and reconnect,
//!   timers, acks, callbacks and receivers, the order of its events (B12), its
//!   [`max_event_backlog`](WebPubSubClientBuilder::max_event_backlog) (past it, the loop stops
//!   reading that client's socket alone), and its `start()` and `stop()`: stopping one client
//!   touches no other.
//! - **Fairness**: each turn of the loop gives every ready client one read budget, and the
//!   dispatcher serves the clients round-robin: while a callback of one client runs, an event
//!   of another waits for at most that one callback, never for the first client's backlog.
//! - **The price**: a callback that blocks holds up the callbacks and receivers of every
//!   client of the runtime (their sockets are still read, up to each one's backlog bound).
//!   Keep callbacks short and hand long work to threads of your own.
//! - **Lifetime**: the threads start with the first client's `start()` and end when the last
//!   clone of the runtime and the last client built with it are dropped; that drop waits for
//!   them (the clients are stopped by then, so the wait is bounded), unless it happens on one
//!   of them. A callback that captures its own client keeps that client, and so the runtime,
//!   alive: remove the callback or let the client go another way.
//! - **From a callback**: every callback of the runtime runs on its dispatcher, so a
//!   `stop()` there, of any client of the runtime, stops asynchronously (waiting would wait
//!   for the dispatcher itself).
//! - **When**: many clients, or a process that must bound its threads. For one or a few
//!   clients the default is as fast, and one client's slow callback cannot delay another's.
//!
//! Memory per idle connected client (B45), measured by `examples/bench/scale.rs` with the
//! clients in one process and the emulator in another (2-core Linux VM, `ws://`): about
//! 5–6 KiB on a shared runtime with 1,000 to 10,000 clients, and about 50 KiB on a client's
//! own two threads (mostly the pages of their stacks), at 1,000 and at 6,000 clients. A
//! client on its own threads also holds three file descriptors (its socket, its loop's
//! epoll and waker), one on a shared runtime.
//!
//! ## Subprotocols
//!
//! [`Protocol::JsonReliable`] (`json.reliable.webpubsub.azure.v1`, the default) numbers every
//! message so that a dropped connection is recovered without loss or repetition.
//! [`Protocol::Json`] (`json.webpubsub.azure.v1`) is lighter but every drop is a new
//! connection: messages sent meanwhile are lost and groups are rejoined.
//!
//! [`Protocol::ProtobufReliable`] and [`Protocol::Protobuf`]
//! (`protobuf.reliable.webpubsub.azure.v1`, `protobuf.webpubsub.azure.v1`) are their twins in
//! protobuf binary frames (B42): the same operations, events, errors, recovery (the reliable
//! one only) and limits, checked by the same tests. Binary payloads travel as raw bytes rather
//! than base64, so a frame of binary data is about a quarter smaller, and the 1 MB limit
//! leaves room for about 1 MB of bytes instead of about 750 KB. What protobuf cannot say: a
//! group message has no [`from_user_id`](GroupMessage::from_user_id) (always `None`), and json
//! sent by the .NET client arrives as text (it sends json as `text_data`). `ping` is encoded
//! too, so keep-alive works (the JS protobuf codec cannot encode it). A frame of the wrong
//! kind (text on protobuf, binary on JSON), an unknown or preview `oneof` case, or bytes that
//! are not protobuf are logged and skipped, never fatal (B34).
//!
//! ```no_run
//! use webpubsub_client::{Protocol, WebPubSubClient};
//! # fn main() -> Result<(), webpubsub_client::Error> {
//! let client = WebPubSubClient::builder("<client-access-url>")
//!     .protocol(Protocol::ProtobufReliable)
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! ## Logging
//!
//! The crate logs through the [`log`](https://docs.rs/log) facade: drops, recoveries and
//! reconnects at `info`, connection attempts and skipped unknown frames at `debug`, malformed
//! frames and exhausted retries at `warn`, sequence acks at `trace`. Install any logger
//! (`env_logger`, …) to see it; with `env_logger`, `RUST_LOG=webpubsub_client=debug` shows
//! the client's own lines down to `debug`. The crate's own lines never contain an access token
//! or a reconnection token.
//!
//! The client reads and writes WebSocket frames itself (the protocol crate's `websocket`
//! module) and writes its own upgrade request, so no library underneath logs a message's
//! text (the service's `connected` message carries the session's reconnection token).
//!
//! ## Bad input
//!
//! Everything is checked before anything is sent, and every refusal is a typed error (B35):
//!
//! | input | error |
//! |---|---|
//! | URL with a scheme other than `ws`, `wss`, `http`, `https` | [`InvalidInput::Url`] (`scheme ``ftp`` is not one of …`) |
//! | URL without a hub (`/client/hubs/{hub}` or `?hub=`) | [`InvalidInput::Url`] (`no hub: …`) |
//! | not a URL, empty, no host, port out of range | [`InvalidInput::Url`] (the parser's reason) |
//! | URL without `access_token` | at `start()`: [`ConnectError::Http`] with status 401 and the service's reason |
//! | credential provider fails or panics | at `start()` or a reconnect: [`ConnectError::Credential`] |
//! | proxy URL with a scheme other than `http`, or bad syntax | [`Proxy::new`]: [`InvalidInput::Proxy`]; from the environment, at `start()`: [`ProxyErrorKind::UnsupportedScheme`], [`ProxyErrorKind::InvalidUrl`] |
//! | wrong or missing proxy credentials | at `start()`: [`ConnectError::Proxy`] with [`ProxyErrorKind::Status`] 407 |
//! | group name empty, or over 1024 characters | [`InvalidInput::GroupName`] |
//! | event name empty | [`InvalidInput::EventName`] |
//! | encoded message over 1 MB (base64 counts in JSON) | [`InvalidInput::PayloadTooLarge`] with the size and the limit |
//! | metadata key, value or total over the limits; time to live over 300 s | [`InvalidInput::Rule`] with the protocol's `RuleError` |
//! | a `protobuf` payload that is not a serialised `google.protobuf.Any` | [`InvalidInput::Rule`] (`InvalidProtobufPayload`) |
//! | metadata or a time to live on a join or leave; a time to live on an event | [`InvalidInput::Options`] |
//! | fire-and-forget with an ack id | [`InvalidInput::Options`] |
//! | an ack id still in flight, given again | [`InvalidInput::AckIdInUse`] |
//! | a request while stopped (before `start()`, after `stop()`) | [`Error::Stopped`] |
//! | `start()` while started, or while stopping | [`StateError::AlreadyStarted`], [`StateError::Stopping`] |
//! | `start()` from the `stopped` callback of a `stop()` that waits for it | [`StateError::Stopping`] |
//!
//! Requests, `join_group`, `start()` and `stop()` may be called from callbacks; a `stop()`
//! there completes asynchronously.
//!
//! ## Testing with the emulator
//!
//! The local service is its own crate, `webpubsub-emulator`: add it to your
//! `[dev-dependencies]` and start one per test on `127.0.0.1:0`. It makes client access URLs
//! with the roles you choose, plays the application server (`hub(..).send_to_group`, ...),
//! and injects faults (drop a connection, lose or fail acks, refuse recovery) so that you can
//! test your application under failure. Its binary, `webpubsub-emulator`, serves the same for
//! other languages and the official server SDKs.
//!
//! ```toml
//! [dev-dependencies]
//! webpubsub-emulator = "0.1"
//! ```
//!
//! ```
//! use std::time::Duration;
//! use webpubsub_client::{Event, WebPubSubClient};
//! use webpubsub_emulator::Emulator;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emu = Emulator::start()?;
//! let url = emu
//!     .client_url("chat")
//!     .user_id("alice")
//!     .role("webpubsub.joinLeaveGroup")
//!     .build();
//! let client = WebPubSubClient::new(&url)?;
//! let events = client.events();
//! let _running = client.start()?;
//! client.join_group("room")?;
//!
//! // The emulator plays your server: its message to the group reaches the client.
//! emu.hub("chat").send_to_group("room", "from the server");
//! let deadline = std::time::Instant::now() + Duration::from_secs(10);
//! loop {
//!     if let Event::ServerMessage(m) = events.recv_deadline(deadline)? {
//!         assert_eq!(m.data.as_text(), Some("from the server"));
//!         break;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Dependencies point one way, lowest first (`tests/architecture.rs` checks it; a module
//! uses only its own layer and those below):
//!
//! 1. [`protocol`] (the `webpubsub-protocol` crate: messages, codec, the wire's rules), then
//!    `error`;
//! 2. `endpoint` (access URLs, redaction), `proxy` (which proxy a connection takes, the
//!    environment's rules, and the `CONNECT` exchange), `retry` (retry policies), `timers`
//!    (recovery, reconnect and sequence-ack timing, pure), `wire` (an encoded frame: text for
//!    JSON, binary for protobuf), `ack_table` (requests waiting for acks), `invocations`
//!    (invocations waiting for their response, and [`InvokeResponse`]), `waiter` (the one-shot
//!    slot a caller waits on, cancellable), `events` (event types, handler registry);
//! 3. `state`: the session state machine, pure — it owns every transition; `runtime`: the
//!    threads clients run on, which know no client — `runtime/reactor` (the I/O thread: one
//!    mio loop that steps each client's driver when its socket is ready, a request woke it
//!    or its deadline passed), `runtime/dispatch` (the dispatcher thread: a queue per client,
//!    served round-robin) and [`Runtime`] (one made per run by default, or shared);
//! 4. `options` (options, builder, credential), then `transport` (non-blocking TCP, proxy
//!    tunnel, TLS and the WebSocket upgrade), then `core` (what the threads share: the session
//!    behind its mutex, the run's controls);
//! 5. `acks` ([`AckHandle`] and its retries), `invoke` ([`InvokeHandle`]) and `io` (a client's
//!    driver on the I/O thread; `io/socket` frames the open connection with the protocol
//!    crate's `websocket`, `io/receive` has one handler per message kind, `io/ended` decides
//!    between recovery, reconnect and stop);
//! 6. `client`: the handle, its operations and the `on_*` registrations.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod ack_table;
mod acks;
mod client;
mod core;
mod endpoint;
mod error;
mod events;
mod invocations;
mod invoke;
mod io;
mod options;
mod proxy;
mod retry;
mod runtime;
mod state;
mod timers;
mod transport;
mod waiter;
mod wire;

/// The wire protocol (the `webpubsub-protocol` crate): message types, codecs and limits.
pub use webpubsub_protocol as protocol;

pub use ack_table::AckOutcome;
pub use acks::{AckCanceller, AckHandle, RequestOptions};
pub use client::{StartGuard, WebPubSubClient};
pub use error::{
    AckFailure, Cancelled, Cause, ConnectError, Error, InvalidInput, InvokeFailure, ProxyError,
    ProxyErrorKind, Result, StateError, TimeoutKind,
};
pub use events::{Event, GroupMessage, ServerMessage, Subscription};
pub use invocations::InvokeResponse;
pub use invoke::{InvokeHandle, InvokeOptions};
pub use options::{Credential, Protocol, ProviderError, WebPubSubClientBuilder};
pub use protocol::{Data, DataType, Metadata};
pub use proxy::Proxy;
pub use retry::{RetryMode, RetryPolicy};
pub use runtime::{Runtime, RuntimeBuilder};
pub use state::ClientState;

/// Re-exported so that TLS options can be given without a direct dependency.
pub use native_tls;

// The public types are usable from any thread.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<WebPubSubClient>();
    assert_send_sync::<StartGuard>();
    assert_send_sync::<AckHandle>();
    assert_send_sync::<AckCanceller>();
    assert_send_sync::<InvokeHandle>();
    assert_send_sync::<InvokeResponse>();
    assert_send_sync::<Error>();
    assert_send_sync::<Event>();
    assert_send_sync::<Credential>();
    assert_send_sync::<WebPubSubClientBuilder>();
    assert_send_sync::<Subscription>();
    assert_send_sync::<Proxy>();
    assert_send_sync::<Runtime>();
    assert_send_sync::<RuntimeBuilder>();
};

/// The README's code blocks, compiled as doctests so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
