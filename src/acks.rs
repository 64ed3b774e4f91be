//! What callers of requests hold: the per-request options and the [`AckHandle`] to wait on,
//! whose wait applies the message retry policy (B26) with the request's own ack id.

use crate::ack_table::{AckOutcome, RequestKind};
use crate::core::Core;
use crate::error::{Error, Result, TimeoutKind};
use crate::waiter::{AckReceiver, RecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Utf8Bytes;

/// Per-request options of the `*_with` and `*_nowait` operations.
///
/// ```
/// use webpubsub_client::RequestOptions;
/// let opts = RequestOptions { no_echo: true, ..Default::default() };
/// let opts2 = RequestOptions::new().ack_id(42).timeout(std::time::Duration::from_secs(5));
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
}

/// A request in flight: wait for its ack later (pipelining, B29).
///
/// Returned by the `*_nowait` operations. [`wait`](AckHandle::wait) applies the client's
/// message retry policy (B26). Dropping the handle without waiting is fine: the ack is then
/// discarded when it arrives.
#[derive(Debug)]
#[must_use = "an AckHandle does nothing unless waited on"]
pub struct AckHandle {
    core: Arc<Core>,
    ack_id: u64,
    kind: RequestKind,
    frame: Utf8Bytes,
    rx: Option<AckReceiver>,
    timeout: Duration,
}

impl AckHandle {
    pub(crate) fn new(
        core: Arc<Core>,
        ack_id: u64,
        kind: RequestKind,
        frame: Utf8Bytes,
        rx: Option<AckReceiver>,
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

    /// Waits for the ack, each attempt bounded by the request's timeout, retrying transient
    /// failures with the same ack id per the client's message retry policy.
    pub fn wait(self) -> Result<AckOutcome> {
        let timeout = self.timeout;
        self.wait_timeout(timeout)
    }

    /// Like [`wait`](AckHandle::wait), with `timeout` bounding each attempt.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<AckOutcome> {
        let Some(mut rx) = self.rx.take() else {
            return Ok(AckOutcome {
                ack_id: 0,
                duplicate: false,
            });
        };
        let policy = self.core.options.message_retry;
        let mut retry = 0;
        loop {
            let result = match rx.recv_timeout(timeout) {
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
            if !self.core.wait_unless_stopped(Instant::now() + delay) {
                return Err(Error::Stopped);
            }
            rx = self
                .core
                .register(self.ack_id, self.kind.clone(), self.frame.clone())?;
        }
    }
}
