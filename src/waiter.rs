//! The one-shot slot between the I/O thread, which resolves a request (its ack, or an
//! invocation's response), and the caller waiting for it: a `bounded(1)` channel reduced to
//! what it is used for, in one small allocation (the acked-request hot path, guarded by
//! `tests/perf_guard.rs`).
//!
//! A waiter is registered in the ack table *before* its frame is queued, so an ack that
//! arrives before the caller starts waiting is kept in the slot and never missed (B27).
//!
//! Besides the I/O thread, the caller's own side may settle the slot: a cancel from another
//! thread (B39) or a timeout fills it so that every waiter returns at once. A cancel is
//! sticky: a request between two attempts (its retry backoff) cannot be re-armed once
//! cancelled. Re-arming reuses the slot for the next attempt of the same request, so a
//! retry costs no allocation; a generation number keeps a stale half of an earlier attempt
//! from filling it.

use crate::ack_table::AckOutcome;
use crate::error::Result;
use parking_lot::{Condvar, Mutex};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the I/O thread sends the waiter of an acked request.
pub(crate) type AckResult = Result<AckOutcome>;

struct Slot<T> {
    state: Mutex<SlotState<T>>,
    filled: Condvar,
}

struct SlotState<T> {
    phase: Phase<T>,
    /// Which attempt's [`Waiter`] may fill the slot.
    generation: u32,
    /// [`SlotReceiver::cancel`] was called: no further attempt.
    cancelled: bool,
}

enum Phase<T> {
    Waiting,
    Done(T),
    /// The result was taken.
    Taken,
    /// The [`Waiter`] was dropped without a result (like a channel's disconnection).
    Closed,
}

/// The I/O thread's half: sends the result once. Dropping it unsent wakes the caller with
/// [`RecvError::Disconnected`].
pub(crate) struct Waiter<T> {
    slot: Arc<Slot<T>>,
    generation: u32,
}

/// The caller's half. Clones share the slot (the handle of an invocation can be cloned to
/// cancel it from another thread).
pub(crate) struct SlotReceiver<T>(Arc<Slot<T>>);

impl<T> Clone for SlotReceiver<T> {
    fn clone(&self) -> Self {
        SlotReceiver(self.0.clone())
    }
}

/// Why [`SlotReceiver::recv_timeout`] returned without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecvError {
    Timeout,
    Disconnected,
}

/// A waiter and the receiver of its result.
pub(crate) fn waiter<T>() -> (Waiter<T>, SlotReceiver<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(SlotState {
            phase: Phase::Waiting,
            generation: 0,
            cancelled: false,
        }),
        filled: Condvar::new(),
    });
    (
        Waiter {
            slot: slot.clone(),
            generation: 0,
        },
        SlotReceiver(slot),
    )
}

impl<T> Waiter<T> {
    /// Delivers the result; never blocks. (A `Result` like the channel's `try_send`: it
    /// fails when the caller's side settled the slot first, by a cancel or a timeout.)
    pub(crate) fn try_send(self, result: T) -> std::result::Result<(), T> {
        let mut state = self.slot.state.lock();
        if !matches!(state.phase, Phase::Waiting) || state.generation != self.generation {
            return Err(result);
        }
        state.phase = Phase::Done(result);
        drop(state);
        self.slot.filled.notify_all();
        Ok(())
    }
}

impl<T> Drop for Waiter<T> {
    fn drop(&mut self) {
        let mut state = self.slot.state.lock();
        if matches!(state.phase, Phase::Waiting) && state.generation == self.generation {
            state.phase = Phase::Closed;
            drop(state);
            self.slot.filled.notify_all();
        }
    }
}

impl<T> fmt::Debug for Waiter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Waiter")
    }
}

impl<T> fmt::Debug for SlotReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SlotReceiver")
    }
}

impl<T> SlotReceiver<T> {
    /// Waits up to `timeout` for the result (it may have arrived already, B27).
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> std::result::Result<T, RecvError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.0.state.lock();
        loop {
            match std::mem::replace(&mut state.phase, Phase::Taken) {
                Phase::Done(r) => return Ok(r),
                Phase::Waiting => state.phase = Phase::Waiting,
                other => {
                    state.phase = other;
                    return Err(RecvError::Disconnected);
                }
            }
            match deadline {
                Some(d) => {
                    if self.0.filled.wait_until(&mut state, d).timed_out()
                        && matches!(state.phase, Phase::Waiting)
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
    pub(crate) fn try_recv(&self) -> Option<T> {
        let mut state = self.0.state.lock();
        match std::mem::replace(&mut state.phase, Phase::Taken) {
            Phase::Done(r) => Some(r),
            other => {
                state.phase = other;
                None
            }
        }
    }

    /// Settles a waiting slot from the caller's side (a timeout that other waiters must see
    /// too): `true` if it was waiting, `false` if a result came first or was taken.
    pub(crate) fn settle(&self, result: T) -> bool {
        let mut state = self.0.state.lock();
        if !matches!(state.phase, Phase::Waiting) {
            return false;
        }
        state.phase = Phase::Done(result);
        drop(state);
        self.0.filled.notify_all();
        true
    }

    /// Cancels (B39): a waiting slot gets `result` and every waiter returns at once; from
    /// now on the slot cannot be [re-armed](Self::rearm), so no further attempt is made. A
    /// result that arrived first stays for the waiter (if it is a transient failure, the
    /// retry it would ask for is refused). `true` if the slot was waiting.
    pub(crate) fn cancel(&self, result: T) -> bool {
        let mut state = self.0.state.lock();
        state.cancelled = true;
        if !matches!(state.phase, Phase::Waiting) {
            return false;
        }
        state.phase = Phase::Done(result);
        drop(state);
        self.0.filled.notify_all();
        true
    }

    /// Whether the result is there or was taken (the request is over for the caller).
    pub(crate) fn is_settled(&self) -> bool {
        !matches!(self.0.state.lock().phase, Phase::Waiting)
    }

    /// A fresh I/O half for the next attempt of the same request, on the same slot; `None`
    /// once cancelled (or while an unread result is there).
    pub(crate) fn rearm(&self) -> Option<Waiter<T>> {
        let mut state = self.0.state.lock();
        if state.cancelled || matches!(state.phase, Phase::Done(_)) {
            return None;
        }
        state.generation = state.generation.wrapping_add(1);
        state.phase = Phase::Waiting;
        Some(Waiter {
            slot: self.0.clone(),
            generation: state.generation,
        })
    }
}

impl<T: Clone> SlotReceiver<T> {
    /// Like [`recv_timeout`](Self::recv_timeout), but a result stays for the other clones
    /// of this receiver: they get a copy; `last` (no other clone can wait) takes it.
    pub(crate) fn recv_shared(&self, timeout: Duration, last: bool) -> Result<T, RecvError> {
        if last {
            return self.recv_timeout(timeout);
        }
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.0.state.lock();
        loop {
            match &state.phase {
                Phase::Done(r) => return Ok(r.clone()),
                Phase::Waiting => {}
                _ => return Err(RecvError::Disconnected),
            }
            match deadline {
                Some(d) => {
                    if self.0.filled.wait_until(&mut state, d).timed_out()
                        && matches!(state.phase, Phase::Waiting)
                    {
                        return Err(RecvError::Timeout);
                    }
                }
                None => self.0.filled.wait(&mut state),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (tx, rx) = waiter::<AckResult>();
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
    fn a_cancel_from_another_thread_returns_the_waiter_and_beats_a_late_result() {
        // B39
        let (tx, rx) = waiter::<u32>();
        let r = rx.clone();
        let t = std::thread::spawn(move || r.recv_timeout(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(rx.cancel(0));
        assert_eq!(t.join().unwrap(), Ok(0));
        assert_eq!(tx.try_send(1), Err(1), "the late result is refused");
        assert!(!rx.cancel(0), "cancelling twice changes nothing");
    }

    #[test]
    fn a_result_that_came_first_survives_a_cancel_but_no_retry_follows() {
        let (tx, rx) = waiter::<u32>();
        assert!(tx.try_send(5).is_ok());
        assert!(!rx.cancel(0));
        assert_eq!(rx.try_recv(), Some(5));
        // Had it been a transient failure, its retry is refused.
        assert!(rx.rearm().is_none());
    }

    #[test]
    fn a_cancel_between_attempts_stops_the_next_one() {
        // B39: cancelled during a retry's backoff, the request is not tried again.
        let (tx, rx) = waiter::<u32>();
        assert!(tx.try_send(1).is_ok());
        assert_eq!(rx.try_recv(), Some(1));
        assert!(!rx.cancel(0), "nothing waits");
        assert!(rx.rearm().is_none());
    }

    #[test]
    fn a_rearmed_slot_ignores_the_half_of_an_earlier_attempt() {
        let (first, rx) = waiter::<u32>();
        // The caller gave up on the first attempt (timeout), the I/O thread still holds it.
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(RecvError::Timeout)
        );
        let second = rx.rearm().expect("not cancelled");
        assert_eq!(first.try_send(1), Err(1), "stale attempt");
        assert!(!rx.is_settled());
        assert!(second.try_send(2).is_ok());
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(2));
    }

    #[test]
    fn shared_receivers_each_get_the_result_and_the_last_takes_it() {
        let (tx, rx) = waiter::<u32>();
        let other = rx.clone();
        assert!(tx.try_send(3).is_ok());
        assert_eq!(other.recv_shared(Duration::ZERO, false), Ok(3));
        assert_eq!(rx.recv_shared(Duration::ZERO, true), Ok(3));
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn a_settled_timeout_is_seen_by_every_waiter() {
        let (tx, rx) = waiter::<u32>();
        assert!(rx.settle(9));
        assert!(!rx.settle(8));
        assert!(rx.is_settled());
        assert_eq!(tx.try_send(1), Err(1));
        assert_eq!(rx.recv_shared(Duration::ZERO, false), Ok(9));
    }
}
