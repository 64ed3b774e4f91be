//! A local Azure Web PubSub service for tests and development.
//!
//! One TCP port serves the client WebSocket endpoint (`/client/hubs/{hub}` and
//! `/client/?hub={hub}`) and the server REST API (`/api/hubs/{hub}/...`), over plain TCP or
//! TLS. It speaks the two JSON subprotocols, with acks and their deduplication, sequence ids
//! and session recovery, roles and run-time permissions, and upstream events; it lets tests
//! watch what happens ([`Emulator::observe`]) and inject faults ([`HubHandle`]).
//!
//! ```
//! use webpubsub_emulator::Emulator;
//!
//! let emu = Emulator::start().unwrap();
//! let url = emu.client_url("chat").user_id("alice").role("webpubsub.joinLeaveGroup").build();
//! assert!(url.starts_with("ws://127.0.0.1:"));
//! emu.hub("chat").send_to_all("hello"); // nobody connected: nothing to do
//! emu.stop();
//! ```
//!
//! # Choices where the service leaves room
//! - Only `json.reliable.webpubsub.azure.v1` and `json.webpubsub.azure.v1` are served; an
//!   upgrade that offers neither (protobuf, none, unknown) is refused with HTTP 400.
//! - A refused token is HTTP 401 with the reason as a text body, never a WebSocket.
//! - The rules are the protocol crate's, the client's own: a group name outside
//!   1..=1024 characters, or a request frame over 1 MB
//!   ([`MAX_MESSAGE_BYTES`](webpubsub_protocol::MAX_MESSAGE_BYTES), measured on the
//!   received WebSocket frame as the client measures the frame it sends, and on the body of
//!   a REST send), is answered with an ack error named [`BAD_REQUEST`] (`"BadRequest"`; a
//!   REST send gets 400); the connection stays. So anything the client lets through, the
//!   emulator accepts. Frames over 4 MB end the connection.
//! - Closes the service makes on purpose (REST or [`HubHandle::close_connection`], unacked
//!   buffer overflow) send `disconnected` then close code 1008, so clients do not try a
//!   recovery that cannot succeed; [`Emulator::stop`] sends `disconnected` and 1001.
//! - A client close frame ends its session; an abrupt drop keeps a reliable session for
//!   the recovery window.
//! - [`EventResponse::Reply`] to an `event` is sent back to the caller as a server message,
//!   as the service does with an event handler's response body.
//! - Every socket loss is reported as [`Observation::Dropped`]; a session that cannot be
//!   recovered any more is then reported as [`Observation::SessionEnded`].
//!
//! # Threads
//! An accept thread, a reaper thread ending sessions whose recovery window passed, and a
//! thread per TCP connection that waits on its socket and a wake-up (mio), reads and
//! handles frames, and writes what other threads queued — many frames per flush. Fan-out
//! encodes a message once; reliable receivers get the sequence id spliced in.
//!
//! # Architecture
//! What a message does (`messages`, `admission`, `rest`) is apart from the sockets that
//! carry it (`net`, `connection`, `upgrade`, `server`), and the state it changes
//! (`session`, `hub`, `shared`) owns its transitions. Modules use only modules listed
//! before them (`tests/architecture.rs` checks it):
//!
//! `{auth, checks, handler, http, types, wake}` → `session` → `hub` → `shared` →
//! `{access, client_url}` → `{admission, handle, messages}` → `rest` → `net` →
//! `connection` → `upgrade` → `server` → `emulator`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod access;
mod admission;
mod auth;
mod checks;
mod client_url;
mod connection;
mod emulator;
mod handle;
mod handler;
mod http;
mod hub;
mod messages;
mod net;
mod rest;
mod server;
mod session;
mod shared;
mod types;
mod upgrade;
mod wake;

pub use checks::BAD_REQUEST;
pub use client_url::{rest_token, ClientUrlBuilder};
pub use emulator::{Emulator, EmulatorBuilder, StartError};
pub use handle::HubHandle;
pub use handler::{EventKind, EventRequest, EventResponse};
pub use types::{ConnectionInfo, Observation, Permission, UpstreamEvent};
