//! Events and the handler registry: what the dispatcher thread (`runtime/dispatch.rs`)
//! delivers each event to.
//!
//! The I/O thread never runs user code: it queues each event for the dispatcher and goes
//! back to the socket. The dispatcher takes one event at a time, in order (B12):
//! [`Registry::deliver`] forwards it to every [`events()`](crate::WebPubSubClient::events)
//! receiver, then calls the handlers, catching panics (B15) — receivers first, so that a
//! handler that wakes a GUI finds the event already in the GUI's receiver. Because acks are
//! resolved on the I/O thread, a handler may block on a client request (or call `stop()`)
//! without deadlocking.

use crate::error::Error;
use crate::protocol::{Data, Metadata};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

/// A message published to a group by a client (`sendToGroup`).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMessage {
    /// The group it was published to.
    pub group: String,
    /// The payload.
    pub data: Data,
    /// The publisher's user id, if it had one (the JSON subprotocols only: protobuf does
    /// not carry it).
    pub from_user_id: Option<String>,
    /// The sequence id (reliable protocol only).
    pub sequence_id: Option<u64>,
    /// The metadata the publisher attached (empty: none; B41).
    pub metadata: Metadata,
}

/// A message from the application server (REST: to all, a user, a connection or a group).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerMessage {
    /// The payload.
    pub data: Data,
    /// The sequence id (reliable protocol only).
    pub sequence_id: Option<u64>,
    /// The metadata the application server sent (REST `X-WebPubSub-Metadata-*` headers;
    /// empty: none; B41).
    pub metadata: Metadata,
}

/// Something that happened to the client.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A new connection is ready, after the automatic rejoin of groups settled. Fires once per
    /// new connection, never after a recovery (B9).
    Connected {
        /// The connection's id.
        connection_id: String,
        /// The user the token named, if any.
        user_id: Option<String>,
    },
    /// The connection session is over: recovery was impossible or failed, or the client was
    /// stopped. Fires once per session that fired `Connected` (B10).
    Disconnected {
        /// The session's connection id.
        connection_id: Option<String>,
        /// The reason from the service's last `disconnected` message, if any.
        message: Option<String>,
        /// The WebSocket close code of the connection, if there was a close frame.
        close_code: Option<u16>,
    },
    /// The client reached Stopped after having started (B11).
    Stopped,
    /// A message published to a group this connection is in.
    GroupMessage(GroupMessage),
    /// A message from the application server.
    ServerMessage(ServerMessage),
    /// The automatic rejoin of a group failed after a new connection (B13).
    RejoinGroupFailed {
        /// The group.
        group: String,
        /// Why.
        error: Error,
    },
    /// The connection dropped and the client is trying to recover the session (B14).
    Recovering {
        /// The session's connection id.
        connection_id: String,
        /// The close code of the dropped connection, if there was a close frame.
        close_code: Option<u16>,
    },
    /// The session was recovered: nothing was lost (B14).
    Recovered {
        /// The session's connection id.
        connection_id: String,
    },
}

type HandlerFn = dyn Fn(&Event) + Send + Sync;

struct Handler {
    id: u64,
    f: Box<HandlerFn>,
}

/// The handlers and stream receivers of one client; outlives its runs, so handlers survive
/// reconnects and restarts (B16).
#[derive(Default)]
pub(crate) struct Registry {
    next_id: AtomicU64,
    // Copy-on-write: the dispatcher clones the `Arc` per event and calls handlers without the
    // lock, so a handler may add or remove handlers.
    handlers: Mutex<Arc<Vec<Arc<Handler>>>>,
    streams: Mutex<Vec<Sender<Event>>>,
    /// Handlers plus stream senders, kept under their locks; read by the I/O thread without
    /// one (see [`Registry::has_listeners`]).
    listeners: AtomicUsize,
}

impl Registry {
    pub(crate) fn add(self: &Arc<Self>, f: Box<HandlerFn>) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut list = self.handlers.lock();
        let mut new = Vec::clone(&list);
        new.push(Arc::new(Handler { id, f }));
        *list = Arc::new(new);
        self.listeners.fetch_add(1, Ordering::SeqCst);
        Subscription {
            id,
            registry: Arc::downgrade(self),
        }
    }

    fn remove(&self, id: u64) -> bool {
        let mut list = self.handlers.lock();
        if !list.iter().any(|h| h.id == id) {
            return false;
        }
        let new: Vec<_> = list.iter().filter(|h| h.id != id).cloned().collect();
        *list = Arc::new(new);
        self.listeners.fetch_sub(1, Ordering::SeqCst);
        true
    }

    pub(crate) fn stream(&self) -> Receiver<Event> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.streams.lock().push(tx);
        self.listeners.fetch_add(1, Ordering::SeqCst);
        rx
    }

    /// Whether any handler or `events()` receiver is registered (a dropped receiver counts
    /// until the next delivery prunes it). The I/O thread skips handing received messages to
    /// the dispatcher when there is none, sparing a thread wake-up per message.
    ///
    /// A handler or receiver registered concurrently with a message's arrival may or may not
    /// get that message, as before: it was never promised messages that arrived before its
    /// registration returned. One registered before is always counted here (the count is
    /// updated, `SeqCst`, before `on_*`/`events()` return), so no message that arrives after
    /// a registration is skipped, and skipping never reorders what is delivered (B12, B16).
    pub(crate) fn has_listeners(&self) -> bool {
        self.listeners.load(Ordering::SeqCst) > 0
    }

    /// Events waiting in the fullest `events()` receiver.
    pub(crate) fn stream_backlog(&self) -> usize {
        self.streams
            .lock()
            .iter()
            .map(Sender::len)
            .max()
            .unwrap_or(0)
    }

    /// Forwards `event` to the streams, then calls every handler with it. Streams first, so
    /// that a handler which wakes a UI (to drain its receiver) never wakes it too early.
    pub(crate) fn deliver(&self, event: Event) {
        let handlers = self.handlers.lock().clone();
        let kept = self.forward(event, !handlers.is_empty());
        if let Some(event) = kept {
            for h in handlers.iter() {
                if catch_unwind(AssertUnwindSafe(|| (h.f)(&event))).is_err() {
                    log::error!("an event handler panicked; delivery continues (B15)");
                }
            }
        }
    }

    /// Sends `event` to every stream, pruning dropped receivers. Returns it when `keep`;
    /// otherwise the last stream gets the event itself and only the others need a clone.
    fn forward(&self, event: Event, keep: bool) -> Option<Event> {
        let mut streams = self.streams.lock();
        let before = streams.len();
        let mut event = Some(event);
        let mut left = before;
        streams.retain(|s| {
            left -= 1;
            let e = if left == 0 && !keep {
                event.take()
            } else {
                event.clone()
            };
            e.is_some_and(|e| s.send(e).is_ok())
        });
        let pruned = before - streams.len();
        if pruned > 0 {
            self.listeners.fetch_sub(pruned, Ordering::SeqCst);
        }
        event
    }
}

/// A registered handler; [`remove`](Subscription::remove) unregisters it.
///
/// Dropping a `Subscription` does **not** remove the handler (a handler registered with
/// `client.on_group_message(...);` stays for the client's life).
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    registry: Weak<Registry>,
}

impl Subscription {
    /// Removes the handler; returns `false` if it was already removed. A handler running at
    /// this moment finishes; it is not called again.
    pub fn remove(self) -> bool {
        self.registry.upgrade().is_some_and(|r| r.remove(self.id))
    }

    /// The same as [`remove`](Subscription::remove).
    pub fn unsubscribe(self) -> bool {
        self.remove()
    }
}
