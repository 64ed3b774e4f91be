//! Requests waiting for their ack: the ack table, request options, and the handle a caller
//! waits on (with message retry, B26).
//!
//! A waiter is registered in the table *before* its frame is queued, so an ack that arrives
//! before the caller starts waiting is kept in the waiter's `bounded(1)` channel and never
//! missed (B27). Acks are resolved on the I/O thread.

use crate::client::Core;
use crate::error::{Error, Result, TimeoutKind};
use crate::state::RequestKind;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Utf8Bytes;

/// A request the service acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckOutcome {
    /// The request's ack id; `0` for a fire-and-forget request, which carries none.
    pub ack_id: u64,
    /// `true` when the service answered `Duplicate`: an earlier try with this ack id was
    /// executed, this one was not (B25).
    pub duplicate: bool,
}

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

/// What the I/O thread sends a waiter.
pub(crate) type AckResult = Result<AckOutcome>;
/// The sending half of a waiter's `bounded(1)` channel.
pub(crate) type Waiter = Sender<AckResult>;

/// One request waiting for its ack.
#[derive(Debug)]
pub(crate) struct Pending<W> {
    /// The encoded frame, kept for a resend after recovery (B21).
    pub frame: Utf8Bytes,
    pub kind: RequestKind,
    /// Written to the current connection session.
    pub sent: bool,
    /// `None` for the client's own requests (automatic rejoin).
    pub waiter: Option<W>,
}

/// The ack table: ack id → pending request, ordered so that resends keep the original order.
#[derive(Debug)]
pub(crate) struct AckTable<W> {
    map: BTreeMap<u64, Pending<W>>,
}

impl<W> Default for AckTable<W> {
    fn default() -> Self {
        AckTable {
            map: BTreeMap::new(),
        }
    }
}

impl<W> AckTable<W> {
    pub(crate) fn contains(&self, ack_id: u64) -> bool {
        self.map.contains_key(&ack_id)
    }

    pub(crate) fn insert(&mut self, ack_id: u64, pending: Pending<W>) {
        self.map.insert(ack_id, pending);
    }

    pub(crate) fn remove(&mut self, ack_id: u64) -> Option<Pending<W>> {
        self.map.remove(&ack_id)
    }

    pub(crate) fn get_mut(&mut self, ack_id: u64) -> Option<&mut Pending<W>> {
        self.map.get_mut(&ack_id)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Frames already written to the session, in ack id order (for a resend after recovery).
    pub(crate) fn sent_frames(&self) -> impl Iterator<Item = &Utf8Bytes> {
        self.map.values().filter(|p| p.sent).map(|p| &p.frame)
    }

    /// Removes every request written to the lost session; returns them.
    pub(crate) fn take_sent(&mut self) -> Vec<(u64, Pending<W>)> {
        let ids: Vec<u64> = self
            .map
            .iter()
            .filter(|(_, p)| p.sent)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.map.remove(&id).map(|p| (id, p)))
            .collect()
    }

    /// Removes every request.
    pub(crate) fn take_all(&mut self) -> Vec<(u64, Pending<W>)> {
        std::mem::take(&mut self.map).into_iter().collect()
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
    rx: Option<Receiver<AckResult>>,
    timeout: Duration,
}

impl AckHandle {
    pub(crate) fn new(
        core: Arc<Core>,
        ack_id: u64,
        kind: RequestKind,
        frame: Utf8Bytes,
        rx: Option<Receiver<AckResult>>,
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
                Err(RecvTimeoutError::Timeout) => {
                    self.core.abandon(self.ack_id);
                    // The ack may have raced the removal; prefer it.
                    rx.try_recv()
                        .unwrap_or(Err(Error::Timeout(TimeoutKind::Ack {
                            ack_id: self.ack_id,
                        })))
                }
                Err(RecvTimeoutError::Disconnected) => Err(Error::Stopped),
            };
            let err = match result {
                Ok(o) => return Ok(o),
                Err(e) if is_transient(&e) => e,
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

/// Failures the message retry retries (B26): lost connection, ack timeout, the service's
/// transient error. `Forbidden` and other definite rejections are final.
fn is_transient(e: &Error) -> bool {
    match e {
        Error::ConnectionLost { .. } | Error::Timeout(TimeoutKind::Ack { .. }) => true,
        Error::Ack(a) => a.name == crate::protocol::AckError::INTERNAL_SERVER_ERROR,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(sent: bool) -> Pending<u8> {
        Pending {
            frame: Utf8Bytes::from("f"),
            kind: RequestKind::Other,
            sent,
            waiter: Some(0),
        }
    }

    #[test]
    fn session_loss_takes_only_sent_requests() {
        let mut t = AckTable::default();
        t.insert(3, pending(true));
        t.insert(1, pending(false));
        t.insert(2, pending(true));
        let lost: Vec<u64> = t.take_sent().into_iter().map(|(id, _)| id).collect();
        assert_eq!(lost, [2, 3]);
        assert!(t.contains(1));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn resend_keeps_ack_id_order() {
        let mut t = AckTable::default();
        for id in [5, 1, 3] {
            let mut p = pending(true);
            p.frame = Utf8Bytes::from(id.to_string());
            t.insert(id, p);
        }
        let order: Vec<&str> = t.sent_frames().map(|f| f.as_str()).collect();
        assert_eq!(order, ["1", "3", "5"]);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(is_transient(&Error::ConnectionLost { ack_id: 1 }));
        assert!(is_transient(&Error::Timeout(TimeoutKind::Ack {
            ack_id: 1
        })));
        let ack = |n: &str| {
            Error::Ack(crate::error::AckFailure {
                ack_id: 1,
                name: n.into(),
                message: String::new(),
            })
        };
        assert!(is_transient(&ack("InternalServerError")));
        assert!(!is_transient(&ack("Forbidden")));
        assert!(!is_transient(&ack("InvocationFailed")));
        assert!(!is_transient(&Error::Stopped));
    }
}
