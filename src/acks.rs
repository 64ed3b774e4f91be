//! Requests waiting for their ack: the ack table, request options, and the handle a caller
//! waits on (with message retry, B26).
//!
//! A waiter is registered in the table *before* its frame is queued, so an ack that arrives
//! before the caller starts waiting is kept in the waiter's slot and never missed (B27).
//! Acks are resolved on the I/O thread.

use crate::client::Core;
use crate::error::{Error, Result, TimeoutKind};
use crate::state::RequestKind;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
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

/// The one-shot slot between the I/O thread (which fills it) and the caller (which waits on
/// it): a `bounded(1)` channel reduced to what it is used for, in one small allocation.
struct Slot {
    state: Mutex<SlotState>,
    filled: Condvar,
}

enum SlotState {
    Waiting,
    Done(AckResult),
    /// The result was taken.
    Taken,
    /// The [`Waiter`] was dropped without a result (like a channel's disconnection).
    Closed,
}

/// The I/O thread's half: sends the result once. Dropping it unsent wakes the caller with
/// [`RecvError::Disconnected`].
pub(crate) struct Waiter(Arc<Slot>);

/// The caller's half.
pub(crate) struct AckReceiver(Arc<Slot>);

/// Why [`AckReceiver::recv_timeout`] returned without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecvError {
    Timeout,
    Disconnected,
}

/// A waiter and the receiver of its result.
pub(crate) fn waiter() -> (Waiter, AckReceiver) {
    let slot = Arc::new(Slot {
        state: Mutex::new(SlotState::Waiting),
        filled: Condvar::new(),
    });
    (Waiter(slot.clone()), AckReceiver(slot))
}

impl Waiter {
    /// Delivers the result; never blocks. (A `Result` like the channel's `try_send`; it
    /// cannot fail while the caller's half may still look.)
    pub(crate) fn try_send(self, result: AckResult) -> std::result::Result<(), AckResult> {
        let mut state = self.0.state.lock();
        if !matches!(*state, SlotState::Waiting) {
            return Err(result);
        }
        *state = SlotState::Done(result);
        drop(state);
        self.0.filled.notify_one();
        Ok(())
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        if matches!(*state, SlotState::Waiting) {
            *state = SlotState::Closed;
            drop(state);
            self.0.filled.notify_one();
        }
    }
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Waiter")
    }
}

impl fmt::Debug for AckReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AckReceiver")
    }
}

impl AckReceiver {
    /// Waits up to `timeout` for the result (it may have arrived already, B27).
    pub(crate) fn recv_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<AckResult, RecvError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.0.state.lock();
        loop {
            match std::mem::replace(&mut *state, SlotState::Taken) {
                SlotState::Done(r) => return Ok(r),
                SlotState::Waiting => *state = SlotState::Waiting,
                other => {
                    *state = other;
                    return Err(RecvError::Disconnected);
                }
            }
            match deadline {
                Some(d) => {
                    if self.0.filled.wait_until(&mut state, d).timed_out()
                        && matches!(*state, SlotState::Waiting)
                    {
                        return Err(RecvError::Timeout);
                    }
                }
                // A timeout too large for an `Instant`: no deadline.
                None => self.0.filled.wait(&mut state),
            }
        }
    }

    /// The result, if it is there.
    pub(crate) fn try_recv(&self) -> Option<AckResult> {
        let mut state = self.0.state.lock();
        match std::mem::replace(&mut *state, SlotState::Taken) {
            SlotState::Done(r) => Some(r),
            other => {
                *state = other;
                None
            }
        }
    }
}

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

/// Hashes ack ids, which the caller picks (or a counter does): no attacker to resist, so a
/// multiply instead of SipHash.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: consecutive ids spread over both the low bits (bucket) and the
        // high bits (hashbrown's tag).
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The ack table: ack id → pending request. A hash map, so that registering and resolving a
/// request costs no tree walk; the rare whole-table operations (resend after recovery, session
/// loss, stop) sort by ack id so that resends keep the original order.
#[derive(Debug)]
pub(crate) struct AckTable<W> {
    map: HashMap<u64, Pending<W>, BuildHasherDefault<IdHasher>>,
}

impl<W> Default for AckTable<W> {
    fn default() -> Self {
        AckTable {
            map: HashMap::default(),
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

    /// Inserts unless the ack id is in use; `false` (and nothing changed) if it is.
    pub(crate) fn insert_new(&mut self, ack_id: u64, pending: Pending<W>) -> bool {
        match self.map.entry(ack_id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(pending);
                true
            }
        }
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
        let mut sent: Vec<(u64, &Utf8Bytes)> = self
            .map
            .iter()
            .filter(|(_, p)| p.sent)
            .map(|(id, p)| (*id, &p.frame))
            .collect();
        sent.sort_unstable_by_key(|(id, _)| *id);
        sent.into_iter().map(|(_, f)| f)
    }

    /// Removes every request written to the lost session; returns them in ack id order.
    pub(crate) fn take_sent(&mut self) -> Vec<(u64, Pending<W>)> {
        let mut ids: Vec<u64> = self
            .map
            .iter()
            .filter(|(_, p)| p.sent)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.map.remove(&id).map(|p| (id, p)))
            .collect()
    }

    /// Removes every request; returns them in ack id order.
    pub(crate) fn take_all(&mut self) -> Vec<(u64, Pending<W>)> {
        let mut all: Vec<(u64, Pending<W>)> = self.map.drain().collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
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

    fn ok(ack_id: u64) -> AckResult {
        Ok(AckOutcome {
            ack_id,
            duplicate: false,
        })
    }

    #[test]
    fn an_ack_sent_before_the_wait_begins_is_kept() {
        // B27: the I/O thread may resolve the request before the caller waits.
        let (tx, rx) = waiter();
        assert!(tx.try_send(ok(1)).is_ok());
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(ok(1)));
        // Taken once.
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn a_waiter_wakes_a_blocked_caller_from_another_thread() {
        let (tx, rx) = waiter();
        let t = std::thread::spawn(move || rx.recv_timeout(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(tx.try_send(ok(7)).is_ok());
        assert_eq!(t.join().unwrap(), Ok(ok(7)));
    }

    #[test]
    fn an_unresolved_wait_times_out_and_a_dropped_waiter_disconnects() {
        let (tx, rx) = waiter();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvError::Timeout)
        );
        assert_eq!(rx.try_recv(), None);
        drop(tx);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(RecvError::Disconnected)
        );
        // A huge timeout (no representable deadline) still returns once resolved.
        let (tx, rx) = waiter();
        assert!(tx.try_send(ok(2)).is_ok());
        assert_eq!(rx.recv_timeout(Duration::MAX), Ok(ok(2)));
    }

    #[test]
    fn ack_ids_in_use_are_refused_and_sent_frames_come_in_id_order() {
        let mut t = AckTable::default();
        for id in (1..=100u64).rev() {
            assert!(t.insert_new(id, pending(id % 3 != 0)));
        }
        assert!(!t.insert_new(50, pending(false)));
        let frames = t.sent_frames().count();
        assert_eq!(frames, 67);
        let all: Vec<u64> = t.take_all().into_iter().map(|(id, _)| id).collect();
        assert_eq!(all, (1..=100).collect::<Vec<_>>());
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
