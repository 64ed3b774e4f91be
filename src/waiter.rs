//! The one-shot slot between the I/O thread, which resolves a request's ack, and the caller
//! waiting for it: a `bounded(1)` channel reduced to what it is used for, in one small
//! allocation (the acked-request hot path, guarded by `tests/perf_guard.rs`).
//!
//! A waiter is registered in the ack table *before* its frame is queued, so an ack that
//! arrives before the caller starts waiting is kept in the slot and never missed (B27).

use crate::ack_table::AckOutcome;
use crate::error::Result;
use parking_lot::{Condvar, Mutex};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the I/O thread sends a waiter.
pub(crate) type AckResult = Result<AckOutcome>;

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
}
