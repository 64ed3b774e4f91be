//! A local Azure Web PubSub service for tests and development.
//!
//! One TCP port serves the client WebSocket endpoint (`/client/hubs/{hub}` and
//! `/client/?hub={hub}`) and the server REST API (`/api/hubs/{hub}/...`, every operation of
//! data-plane API 2024-12-01), over plain TCP or TLS. It speaks the four PubSub
//! subprotocols — JSON and protobuf, each plain and reliable — with acks and their
//! deduplication, sequence ids and session recovery, roles (wildcard ones too) and run-time
//! permissions, message metadata, and upstream events; it lets tests watch what happens
//! ([`Emulator::observe`]) and inject faults ([`HubHandle`], or over HTTP from any language:
//! [Faults over HTTP](#faults-over-http)).
//!
//! It runs two ways: **in your test process** (this library), or as the **binary**
//! `webpubsub-emulator` that any language's SDK can talk to (see the README: `cargo install
//! --path emulator`, then `webpubsub-emulator --port 0`).
//!
//! # In Rust tests
//!
//! Add it as a dev-dependency:
//!
//! ```toml
//! [dev-dependencies]
//! webpubsub-emulator = "0.1"
//! ```
//!
//! [`Emulator::start`] binds `127.0.0.1:0` (a free port) with a random access key; every
//! test gets its own service, and dropping it stops it. [`Emulator::client_url`] signs a
//! client access URL as the server SDKs do — with a user, roles and groups joined on
//! connect — for the client under test; [`Emulator::connection_string`] is what a server
//! SDK reads. The test then drives the service's side through [`Emulator::hub`] and waits
//! on [`Emulator::observe`]:
//!
//! ```
//! use std::time::Duration;
//! use webpubsub_emulator::{Emulator, Observation};
//!
//! let emu = Emulator::start().unwrap();
//! let events = emu.observe();
//! let url = emu
//!     .client_url("chat")
//!     .user_id("alice")
//!     .role("webpubsub.joinLeaveGroup")
//!     .group("room") // joined on connect
//!     .build();
//! assert!(url.starts_with("ws://127.0.0.1:"));
//!
//! // Any WebSocket client will do; here a bare tungstenite one.
//! let tcp = std::net::TcpStream::connect(emu.addr()).unwrap();
//! tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
//! let mut req = tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
//! req.headers_mut().insert(
//!     "Sec-WebSocket-Protocol",
//!     "json.reliable.webpubsub.azure.v1".parse().unwrap(),
//! );
//! let (mut ws, _) = tungstenite::client(req, tcp).unwrap();
//!
//! // Every wait is bounded.
//! let id = loop {
//!     match events.recv_timeout(Duration::from_secs(10)).unwrap() {
//!         Observation::Connected { connection_id, .. } => break connection_id,
//!         _ => {}
//!     }
//! };
//! let hub = emu.hub("chat");
//! assert_eq!(hub.group_members("room"), [id.clone()]);
//! hub.send_to_group("room", "hello");
//! let connected = ws.read().unwrap(); // {"type":"system","event":"connected",...}
//! let message = ws.read().unwrap(); // {"type":"message","from":"server",...,"sequenceId":1}
//! assert!(connected.to_text().unwrap().contains("connected"));
//! assert!(message.to_text().unwrap().contains(r#""data":"hello""#));
//!
//! // Fault injection: cut the socket; the reliable session waits for a recovery.
//! assert!(hub.drop_connection(&id));
//! loop {
//!     if let Observation::Dropped { .. } = events.recv_timeout(Duration::from_secs(10)).unwrap() {
//!         break;
//!     }
//! }
//! assert!(!hub.connections()[0].connected);
//! emu.stop(); // also done on drop
//! ```
//!
//! What [`HubHandle`] offers:
//! - **what an application server does** through the REST API: send to all, a user, a
//!   connection or a group (with exclusions); add and remove connections and users to and
//!   from groups; close connections (one, a group's, a user's, all); grant, revoke and
//!   check permissions; ask whether a
//!   connection, group or user exists; list connections and group members; read the
//!   upstream `event`s clients sent ([`HubHandle::events`]);
//! - **faults**: [`drop_connection`](HubHandle::drop_connection) (abrupt, recoverable),
//!   [`drop_connection_mid_frame`](HubHandle::drop_connection_mid_frame),
//!   [`lose_next_ack`](HubHandle::lose_next_ack) (executed, ack lost, socket dropped),
//!   [`fail_next_acks`](HubHandle::fail_next_acks) (`InternalServerError`),
//!   [`hold_outbound`](HubHandle::hold_outbound), [`delay_acks`](HubHandle::delay_acks),
//!   [`close_connection`](HubHandle::close_connection) (for good: `disconnected`, 1008); and
//!   on the emulator, [`Emulator::refuse_recoveries`].
//!
//! [`Observation`]s report connections, recoveries, drops, ended sessions, every decoded
//! client request, refused recoveries and refused tokens — never a token. The upstream
//! event handler is in process ([`EmulatorBuilder::event_handler`], a closure), or an app
//! server's over HTTP as the service calls it ([`EmulatorBuilder::upstream`], see
//! [`upstream`]; the binary's `--event-handler` and `--config`); other options
//! (address, access key, recovery window, unacked-buffer limits, TLS, I/O threads) are on
//! [`EmulatorBuilder`]. [`rest_token`] signs a token for calling the REST API with a
//! plain HTTP client.
//!
//! # Subprotocols, and messages crossing them
//!
//! A connection speaks the first of `json.reliable.webpubsub.azure.v1`,
//! `json.webpubsub.azure.v1`, `protobuf.reliable.webpubsub.azure.v1` and
//! `protobuf.webpubsub.azure.v1` that it offers (names compared ignoring ASCII case, answered
//! as the client spelled it): JSON in text frames, or protobuf in binary frames, one message
//! per frame. Everything works the same in all four — acks, duplicates, roles, invoke, ping,
//! the system messages, every fault; only the reliable ones carry sequence ids and recover
//! (same URL parameters, same 1008 rule, same window). A frame of the other kind (text on
//! protobuf, binary on JSON), one that does not decode, or a message of a kind the emulator
//! does not know is logged and skipped; the connection stays. The 1 MB limit measures the
//! received frame, text or binary.
//!
//! One group may mix all four. Each member receives a message in its own subprotocol, the
//! payload unchanged in meaning, whoever sent it (a client of any subprotocol, or the
//! application server):
//!
//! | payload | JSON receivers (`dataType`, `data`) | protobuf receivers (`MessageData`) |
//! |---|---|---|
//! | text | `text`, the string | `text_data` |
//! | json | `json`, the value as is | `json_data`, the value serialised |
//! | binary | `binary`, standard base64 | `binary_data`, the raw bytes |
//! | protobuf | `protobuf`, base64 of the whole serialised `google.protobuf.Any` | `protobuf_data`, that `Any` |
//!
//! So a JSON client's `dataType: "protobuf"` data is the base64 of a serialised `Any`, and
//! reaches protobuf clients as that `Any`; a `sendToGroup` whose protobuf payload is not one
//! is refused with [`BAD_REQUEST`] (protobuf receivers read it as an embedded message).
//! Protobuf `text_data` holding JSON is text, as it says (the .NET client sends json so: its
//! receivers see text); only `json_data` is json. Protobuf has no `fromUserId`: JSON members
//! get the publisher's user, protobuf members do not. A recovery must speak the subprotocol
//! of its session (whose unacknowledged frames are in that codec); over another one it is
//! refused with 1008. [`ConnectionInfo::subprotocol`] says which one a session speaks.
//!
//! # Metadata and TTL
//!
//! A `sendToGroup`, `event` or `invoke` may carry metadata, and a `sendToGroup` a
//! `ttlSeconds` (PROTOCOL.md §11). They are checked with the protocol crate's rules
//! ([`ClientMessage::check`](webpubsub_protocol::ClientMessage::check): keys of HTTP token
//! characters up to 256 bytes, printable ASCII values up to 1024 bytes, 8 KiB in all; a TTL
//! of 0 to 300 s): a refusal is the ack error [`BAD_REQUEST`] with the rule's message, or for
//! an `invoke` a failed `invokeResponse` with that error, and the request does not run.
//! Accepted metadata travels on:
//! - the publisher's metadata is on every `message` the group's members receive, in JSON
//!   (`"metadata":{…}` after `data`) and protobuf, and in recovery replays;
//! - the event handler sees the metadata of `event`s and `invoke`s
//!   ([`EventRequest::metadata`]; also [`UpstreamEvent::metadata`]), and may answer with its
//!   own ([`EventResponse::with_metadata`]): an `invokeResponse` carries it, and so does the
//!   server message that brings an event's reply back to its caller.
//!
//! A TTL is enforced where the emulator holds a message for a receiver that is away: a
//! reliable session that recovers is not sent the messages whose TTL passed while it was
//! dropped (it sees a gap in the sequence ids). A TTL of 0 thus reaches only the sessions
//! connected at that moment. Messages queued for a connected socket (also while
//! [`HubHandle::hold_outbound`] holds them) are written whatever their TTL. A JSON
//! `ttlSeconds` that is not a whole number from 0 to 2³²−1 makes the frame malformed:
//! logged and skipped, like any ill-typed field.
//!
//! # The binary
//!
//! `webpubsub-emulator [--host ADDR] [--port PORT] [--access-key KEY] [--enable-faults]
//! [--event-handler 'HUB=URL_TEMPLATE']... [--config FILE]` serves on `127.0.0.1:8080` by
//! default (`--port 0` picks a free port), calling the app servers' event handlers given;
//! `--help` lists every option. Its first line on stdout is
//! the connection string (`Endpoint=http://127.0.0.1:PORT;AccessKey=...;Version=1.0;`),
//! which the official server SDKs take as they are; a ready-made client URL for hub `chat`
//! follows on stderr. It serves until interrupted; `RUST_LOG=debug` logs what it does.
//!
//! # The REST API
//!
//! The emulator's README lists every operation with its status next to Microsoft's
//! emulator's. In short: sends to all, a user, a connection or a group take `excluded`
//! (all, group), an OData `filter` (all, user, group), `messageTtlSeconds` (0–300,
//! enforced as for WebSocket sends: see [Metadata and TTL](#metadata-and-ttl)) and `X-WebPubSub-Metadata-<key>`
//! headers, which become the message's metadata (keys in lower case, checked with the
//! protocol crate's rules). `:addToGroups` / `:removeFromGroups` take `{"groups": [...],
//! "filter": "..."}`; `GET /groups/{group}/connections` pages with `maxpagesize`, `top` and
//! continuation tokens (absolute `nextLink`s); `HEAD /api/health` needs no token. Errors
//! carry the service's body `{"code", "message", "target"}`.
//!
//! Filters follow the service's documented grammar over `connectionId`, `userId`, `groups`
//! and `protocol`: comparisons (`eq`, `ne`, `gt`, `ge`, `lt`, `le`), `and`, `or`, `not`,
//! parentheses, `in` (`'g1' in groups`, `userId in ('a', 'b')`), string literals with `''`
//! for a quote, integers, `true`, `false`, `null`, and the functions `length`, `tolower`,
//! `toupper`, `trim`, `concat`, `substring`, `indexof`, `contains`, `startswith`,
//! `endswith`. They are parsed and type-checked before anything is sent; a bad one is a 400
//! whose message names the position (in characters, from 0) and what was expected there.
//!
//! Wildcard roles `webpubsub.joinLeaveGroups.<pattern>` and `webpubsub.sendToGroups.<pattern>`
//! allow the groups a pattern matches: `*` within one dot-separated segment, `**` across
//! segments, `?` one character that is not `.`, `\*` `\?` `\\` literal, case-sensitive, at
//! most 5 `*` (an invalid pattern gives nothing, as in the service). A REST grant's
//! `targetName` is a group name; revoking one group denies it even where a pattern or the
//! every-group role covers it.
//!
//! # Faults over HTTP
//!
//! With [`EmulatorBuilder::rest_faults`] (the binary's `--enable-faults`) the emulator
//! serves its own routes under `/emulator/faults` — not part of the service's API — that
//! call the faults of [`HubHandle`] and [`Emulator::refuse_recoveries`], so that tests in
//! any language can use them. They are authorised as REST calls are (a bearer token signed
//! with the access key, `aud` = the request URL); off, every such path is a 404.
//!
//! | route | fault |
//! |---|---|
//! | `GET /emulator/faults` | lists the routes (200, JSON) |
//! | `POST /emulator/faults/hubs/{hub}/connections/{id}/:drop` | [`HubHandle::drop_connection`] |
//! | `POST …/connections/{id}/:dropMidFrame` | [`HubHandle::drop_connection_mid_frame`] |
//! | `POST …/connections/{id}/:loseNextAck` | [`HubHandle::lose_next_ack`] |
//! | `POST …/connections/{id}/:failNextAcks?count=N` | [`HubHandle::fail_next_acks`] (default 1) |
//! | `POST …/connections/{id}/:holdOutbound`, `:releaseOutbound` | [`HubHandle::hold_outbound`] |
//! | `POST …/connections/{id}/:delayAcks?milliseconds=N` | [`HubHandle::delay_acks`] (at most 10 min) |
//! | `POST /emulator/faults/:refuseRecoveries`, `:acceptRecoveries` | [`Emulator::refuse_recoveries`] |
//!
//! Success is 204; an unknown connection (for the drops: one without a socket) is a 404, a
//! bad number a 400, with the REST API's error body.
//!
//! ```
//! use std::time::Duration;
//! use webpubsub_emulator::{rest_token, Emulator};
//!
//! let emu = Emulator::builder().rest_faults(true).start().unwrap();
//! let url = format!("{}/emulator/faults/:refuseRecoveries", emu.endpoint());
//! let token = rest_token(emu.access_key(), &url, Duration::from_secs(60));
//! // Any HTTP client: POST `url` with `Authorization: Bearer {token}` → 204.
//! # let _ = token;
//! ```
//!
//! # Choices where the service leaves room
//! - The four PubSub subprotocols are served, the first one offered winning; an upgrade
//!   that offers none of them (or only unknown ones) is a simple WebSocket client: each
//!   frame is the user event `message` for the hub's event handler, a reply comes back as a
//!   frame, a failure closes it with 1011 (PROTOCOL.md §2).
//! - A refused token is HTTP 401 with the reason as a text body, never a WebSocket.
//! - The rules are the protocol crate's, the client's own: a group name outside
//!   1..=1024 characters, an empty event name, metadata or a TTL outside the limits, a
//!   `protobuf` payload to a group that is not a serialised `Any`, or a request frame over 1 MB
//!   ([`MAX_MESSAGE_BYTES`](webpubsub_protocol::MAX_MESSAGE_BYTES), measured on the
//!   received WebSocket frame as the client measures the frame it sends, and on the body of
//!   a REST send), is answered with an ack error named [`BAD_REQUEST`] (`"BadRequest"`; a
//!   REST send gets 400); the connection stays. So anything the client lets through, the
//!   emulator accepts. Frames over 4 MB end the connection.
//! - Closes the service makes on purpose (REST or [`HubHandle::close_connection`], unacked
//!   buffer overflow) send `disconnected` then close code 1008, so clients do not try a
//!   recovery that cannot succeed; [`Emulator::stop`] sends `disconnected` and 1001.
//! - A client close frame ends its session; an abrupt drop keeps a reliable session for
//!   the recovery window. A recovery over another subprotocol than its session's is refused
//!   (1008).
//! - A TTL is enforced on recovery replays only (see [Metadata and TTL](#metadata-and-ttl)).
//! - [`EventResponse::Reply`] to an `event` is sent back to the caller as a server message,
//!   as the service does with an event handler's response body.
//! - Every socket loss is reported as [`Observation::Dropped`]; a session that cannot be
//!   recovered any more is then reported as [`Observation::SessionEnded`].
//!
//! # Threads
//! A few **I/O threads** serve every socket: `webpubsub-emulator-io-0`, `-1`, ... — one per
//! core, at most 4 ([`EmulatorBuilder::io_threads`] sets another number). Each is a
//! readiness loop (mio) that owns its sockets and drives each one's state machine: TLS, the
//! HTTP request head and a REST body read as their bytes arrive (each step with a deadline,
//! so that a slow or silent peer holds nothing but its own socket), the upgrade, WebSocket
//! frames in and out, graceful closes and their timeout, injected faults, a recovery taking
//! a session over from another socket. Thread 0 also accepts — and gives each socket to the
//! thread with the fewest — and ends dropped sessions whose recovery window passed.
//!
//! Whoever queues frames for a session (another connection's message, a REST call, a test
//! through [`HubHandle`]) wakes the thread that owns the session's socket: the socket is put
//! on that thread's ready list once per burst, and the thread gets one system call per burst
//! — none if it queued them itself. Fan-out encodes a message at most once per codec, JSON
//! and protobuf, when it reaches the first receiver speaking it (reliable receivers get
//! their sequence id spliced into that one encoding), and a thread writes many frames per
//! system call ([`EmulatorBuilder::flush_each_frame`] writes each with one of its own, as a
//! server that flushes after every message does). An idle
//! connection holds no buffer: the threads read into and write from buffers they share, and
//! what a burst made grow is let go once it has passed (10,000 idle connections take about
//! 2 KiB each, measured by `tests/emulator_scale.rs`).
//!
//! REST operations run on the I/O thread that read the request: they change memory and
//! never wait. The in-process event handler ([`EmulatorBuilder::event_handler`]) runs on the
//! I/O thread of the caller's connection, so keep it quick: that thread's other sockets wait
//! while it runs. Calls to app servers' HTTP event handlers ([`upstream`]) run on
//! `webpubsub-upstream-N` worker threads, started when needed. A socket that waits for one
//! is parked, not its thread: an upgrade waiting for its connect answer writes nothing yet,
//! and a connection waiting for a user event's answer reads no further frame but still
//! writes; the answer reaches the socket's I/O thread through a wake-up.
//!
//! Why one thread per core: a message from one client to another is read, decoded and fanned
//! out on the sender's thread and written on the receiver's; with the two sockets on
//! different threads both halves run at once. Measured on 2 shared cores (the fan-out test
//! `tests/emulator_perf.rs`, a client's `sendToGroup` to one plain receiver, median of 5):
//! about 800,000 messages/s with 2 threads, 420,000 with 1 — and 590,000 with the earlier
//! thread per connection.
//!
//! # Architecture
//! What a message does (`messages`, `admission`, `rest`) is apart from the sockets that
//! carry it (`websocket`, `net`, `wire`, `connection`, `upgrade`, `request`, `io_loop`,
//! `server`), and the state it changes (`session`, `hub`, `shared`) owns its transitions.
//! `websocket` is the server's end of the protocol crate's frame codec (the emulator's size
//! limit, its queued frames and close codes around the wire's framing rules); `wire` is a
//! WebSocket's socket side; `connection` (a WebSocket with its session) and `request` (a
//! socket before it is one: TLS, HTTP, REST) are state machines that `io_loop` drives;
//! `wake` carries wake-ups from any thread to the loop that owns a socket. Modules use only
//! modules listed before them (`tests/architecture.rs` checks it):
//!
//! `{auth, checks, frames, handler, http, odata, patterns, types, upstream, wake}` → `roles` →
//! `session` → `hub` → `shared` → `{access, client_url}` →
//! `{admission, exchange, handle, messages}` → `faults` → `rest` → `{net, websocket}` →
//! `wire` → `connection` → `upgrade` → `request` → `io_loop` → `server` → `emulator`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod access;
mod admission;
mod auth;
mod checks;
mod client_url;
mod connection;
mod emulator;
mod exchange;
mod faults;
mod frames;
mod handle;
mod handler;
mod http;
mod hub;
mod io_loop;
mod messages;
mod net;
mod odata;
mod patterns;
mod request;
mod rest;
mod roles;
mod server;
mod session;
mod shared;
mod types;
mod upgrade;
pub mod upstream;
mod wake;
mod websocket;
mod wire;

pub use checks::BAD_REQUEST;
pub use client_url::{rest_token, ClientUrlBuilder};
pub use emulator::{Emulator, EmulatorBuilder, StartError};
pub use handle::HubHandle;
pub use handler::{EventKind, EventRequest, EventResponse};
pub use types::{ConnectionInfo, Observation, Permission, UpstreamEvent};

/// The README's Rust example compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
