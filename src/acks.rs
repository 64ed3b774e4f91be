//! What callers of requests hold: the per-request options, the [`AckHandle`] to wait on,
//! whose wait applies the message retry policy (B26) with the request's own ack id, and the
//! [`AckCanceller`] that stops the wait from another thread (B39).

use crate::ack_table::{AckOutcome, RequestKind};
use crate::core::Core;
use crate::error::{Cancelled, Error, Result, TimeoutKind};
use crate::protocol::Metadata;
use crate::waiter::{AckResult, RecvError, SlotReceiver};
use crate::wire::WireFrame;
use std::sync::Arc;
use std::time::Duration;

/// Per-request options of the `*_with` and `*_nowait` operations.
///
/// ```
/// use webpubsub_client::{protocol::Metadata, RequestOptions};
/// let opts = RequestOptions { no_echo: true, ..Default::default() };
/// let opts2 = RequestOptions::new().ack_id(42).timeout(std::time::Duration::from_secs(5));
/// // Metadata and a time to live travel with a `send_to_group` (B41).
/// let opts3 = RequestOptions::new()
///     .metadata(Metadata::new().with("trace-id", "4bf92f35"))
///     .ttl_seconds(60);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// The ack id to use; by default the client's counter picks the next one (B24). Reusing
    /// the ack id of an earlier try makes the service deduplicate within the session.
    pub ack_id: Option<u64>,
    /// Do not deliver a group message back to this connection (`sendToGroup` only).
    pub no_echo: bool,
    /// Send without an ack id and return once the frame is queued; errors become invisible
    /// (B28).
    pub fire_and_forget: bool,
    /// How long each attempt waits for its ack; defaults to the client's `ack_timeout`.
    pub timeout: Option<Duration>,
    /// Metadata the receivers (`send_to_group`) or the event handler (`send_event`) get with
    /// the message (B41). Checked before sending ([`check_metadata`]: keys of 1–256 HTTP
    /// token characters, values of at most 1024 printable ASCII bytes, 8 KiB in all);
    /// refused on `join_group`/`leave_group`, which carry none. Defaults to none.
    ///
    /// [`check_metadata`]: crate::protocol::check_metadata
    pub metadata: Metadata,
    /// How long the service may hold a `send_to_group` message for a receiver, in seconds
    /// (0–300, B41); refused on other requests. Defaults to `None`: the service's choice.
    pub ttl_seconds: Option<u32>,
}

impl RequestOptions {
    /// The defaults: counter ack id, echo on, acked, the client's ack timeout.
    pub fn new() -> RequestOptions {
        RequestOptions::default()
    }

    /// Sets [`ack_id`](RequestOptions::ack_id).
    pub fn ack_id(mut self, ack_id: u64) -> Self {
        self.ack_id = Some(ack_id);
        self
    }

    /// Sets [`no_echo`](RequestOptions::no_echo).
    pub fn no_echo(mut self, no_echo: bool) -> Self {
        self.no_echo = no_echo;
        self
    }

    /// Sets [`fire_and_forget`](RequestOptions::fire_and_forget).
    pub fn fire_and_forget(mut self, on: bool) -> Self {
        self.fire_and_forget = on;
        self
    }

    /// Sets [`timeout`](RequestOptions::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets [`metadata`](RequestOptions::metadata).
    pub fn metadata(mut self, metadata: impl Into<Metadata>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Sets [`ttl_seconds`](RequestOptions::ttl_seconds).
    pub fn ttl_seconds(mut self, seconds: u32) -> Self {
        self.ttl_seconds = Some(seconds);
        self
    }
}

/// A request in flight: wait for its ack later (pipelining, B29).
///
/// Returned by the `*_nowait` operations. [`wait`](AckHandle::wait) applies the client's
/// message retry policy (B26). Dropping the handle without waiting is fine: the request
/// still goes out (and is resent after a recovery), and its ack is discarded when it
/// arrives. To stop a wait from another thread, take a [`canceller`](AckHandle::canceller).
#[derive(Debug)]
#[must_use = "an AckHandle does nothing unless waited on"]
pub struct AckHandle {
    core: Arc<Core>,
    ack_id: u64,
    kind: RequestKind,
    frame: WireFrame,
    rx: Option<SlotReceiver<AckResult>>,
    timeout: Duration,
}

/// Stops the wait of an acked request from any thread (B39), e.g. a GUI's cancel button
/// while another thread blocks in [`AckHandle::wait`]. From
/// [`AckHandle::canceller`]; `Clone + Send + Sync`.
#[derive(Debug, Clone)]
pub struct AckCanceller {
    core: Arc<Core>,
    ack_id: u64,
    rx: Option<SlotReceiver<AckResult>>,
}

impl AckCanceller {
    /// The request's ack id.
    pub fn ack_id(&self) -> u64 {
        self.ack_id
    }

    /// Stops waiting: a thread blocked in [`AckHandle::wait`] (or one that waits later)
    /// returns [`Error::Cancelled`] at once, and no further attempt is made (a retry
    /// backoff is cut short). The request's outcome stays unknown, as the error says: if it
    /// went out, the service may execute it, and its ack is then dropped; if it had not
    /// gone out yet (the client was recovering), it is not sent. An answer that arrived
    /// before the cancel wins — the wait returns it — unless it is a transient failure, whose
    /// retry the cancel refuses. Idempotent; does nothing for a fire-and-forget request.
    pub fn cancel(&self) {
        let Some(rx) = &self.rx else { return };
        let cancelled = Err(Error::Cancelled(Cancelled::Request {
            ack_id: self.ack_id,
        }));
        if rx.cancel(cancelled) {
            // Not resent after a recovery, not written if still queued.
            self.core.abandon(self.ack_id);
        }
    }
}

impl AckHandle {
    pub(crate) fn new(
        core: Arc<Core>,
        ack_id: u64,
        kind: RequestKind,
        frame: WireFrame,
        rx: Option<SlotReceiver<AckResult>>,
        timeout: Duration,
    ) -> AckHandle {
        AckHandle {
            core,
            ack_id,
            kind,
            frame,
            rx,
            timeout,
        }
    }

    /// The request's ack id (`0` for fire-and-forget).
    pub fn ack_id(&self) -> u64 {
        self.ack_id
    }

    /// A handle that stops this request's wait from another thread (B39).
    ///
    /// ```no_run
    /// # use webpubsub_client::{Error, RequestOptions, WebPubSubClient};
    /// # fn main() -> Result<(), Error> {
    /// # let client = WebPubSubClient::new("wss://h/client/hubs/chat?access_token=t")?;
    /// let handle = client.send_to_group_nowait("room", "hi", &RequestOptions::new())?;
    /// let cancel = handle.canceller();
    /// std::thread::spawn(move || cancel.cancel()); // e.g. the user pressed "Cancel"
    /// match handle.wait() {
    ///     Err(Error::Cancelled(_)) => println!("not waiting any more; outcome unknown"),
    ///     other => println!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn canceller(&self) -> AckCanceller {
        AckCanceller {
            core: self.core.clone(),
            ack_id: self.ack_id,
            rx: self.rx.clone(),
        }
    }

    /// Waits for the ack, each attempt bounded by the request's timeout, retrying transient
    /// failures with the same ack id per the client's message retry policy.
    pub fn wait(self) -> Result<AckOutcome> {
        let timeout = self.timeout;
        self.wait_timeout(timeout)
    }

    /// Like [`wait`](AckHandle::wait), with `timeout` bounding each attempt.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<AckOutcome> {
        let Some(rx) = self.rx.take() else {
            return Ok(AckOutcome {
                ack_id: 0,
                duplicate: false,
            });
        };
        let policy = self.core.options.message_retry;
        let mut retry = 0;
        // A result that arrived while the request was parked for its backoff.
        let mut early: Option<AckResult> = None;
        loop {
            let result = match early.take() {
                Some(r) => r,
                None => self.attempt(&rx, timeout),
            };
            let err = match result {
                Ok(o) => return Ok(o),
                // B26: one rule decides what is worth another try.
                Err(e) if e.is_retryable() => e,
                Err(e) => return Err(e),
            };
            retry += 1;
            let Some(delay) = policy.delay_for(retry) else {
                return Err(err);
            };
            log::debug!(
                "request {} failed ({err}); retry {retry} in {delay:?}",
                self.ack_id
            );
            // B39: a cancel since the last attempt ends the wait.
            let Some(waiter) = rx.rearm() else {
                return Err(Error::Cancelled(Cancelled::Request {
                    ack_id: self.ack_id,
                }));
            };
            // Parked during the backoff: a stop (B5) or a cancel wakes the wait at once.
            self.core
                .park(self.ack_id, self.kind.clone(), self.frame.clone(), waiter)?;
            match rx.recv_timeout(delay) {
                Ok(r) => {
                    // Resolved while parked (a stop, a cancel, a late ack of an earlier
                    // attempt): nothing is left to send.
                    self.core.abandon(self.ack_id);
                    early = Some(r);
                }
                Err(RecvError::Timeout) => self.core.unpark(self.ack_id),
                Err(RecvError::Disconnected) => return Err(Error::Stopped),
            }
        }
    }

    /// Waits for one attempt's ack.
    fn attempt(&self, rx: &SlotReceiver<AckResult>, timeout: Duration) -> AckResult {
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(RecvError::Timeout) => {
                self.core.abandon(self.ack_id);
                // The ack may have raced the removal; prefer it.
                rx.try_recv()
                    .unwrap_or(Err(Error::Timeout(TimeoutKind::Ack {
                        ack_id: self.ack_id,
                    })))
            }
            Err(RecvError::Disconnected) => Err(Error::Stopped),
        }
    }
}
