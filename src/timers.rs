//! The I/O thread's timers, pure: when to try recovering again (B18, B46), when to try a new
//! connection (B22), and when to acknowledge sequence ids (B20, B31). Values driven by the
//! current time, unit-tested without sockets or clocks.

use crate::retry::RetryPolicy;
use std::time::{Duration, Instant};

/// The pause after the first failed recovery attempt (B46); each later one doubles, up to
/// the recovery interval.
pub(crate) const RECOVERY_FIRST_PAUSE: Duration = Duration::from_millis(5);

/// Timing of one recovery episode (B18, B46): first try at once; after a failed attempt,
/// the next one after 5 ms, then 10 ms, 20 ms, … doubling up to `interval`, so that a cut
/// during a recovery handshake costs milliseconds while a service that stays away is tried
/// about once per `interval`; for at most `window`; a close code 1008 ends it at once.
#[derive(Debug, Clone)]
pub(crate) struct RecoveryPlan {
    began: Instant,
    deadline: Instant,
    interval: Duration,
    /// Attempts failed so far in this episode.
    failures: u32,
}

impl RecoveryPlan {
    pub(crate) fn new(now: Instant, window: Duration, interval: Duration) -> RecoveryPlan {
        RecoveryPlan {
            began: now,
            deadline: now + window,
            interval,
            failures: 0,
        }
    }

    /// The pause after the `failures`-th failed attempt (from 1): 5 ms doubling, capped at
    /// `interval`.
    fn pause(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        (RECOVERY_FIRST_PAUSE * (1u32 << doublings)).min(self.interval)
    }

    /// How long the episode has lasted, and how many of its attempts failed (for the log).
    pub(crate) fn progress(&self, now: Instant) -> (Duration, u32) {
        (now.saturating_duration_since(self.began), self.failures)
    }

    /// The deadline of the whole episode; an attempt still dialing then is abandoned.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// After a failed attempt that started at `attempt_start`: when to try again (the
    /// pause counts from the attempt's start, so an attempt that took longer than its pause
    /// to fail is followed at once), or `None` to give up.
    pub(crate) fn next_try(
        &mut self,
        attempt_start: Instant,
        now: Instant,
        close_code: Option<u16>,
    ) -> Option<Instant> {
        if close_code == Some(1008) {
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        let next = (attempt_start + self.pause(self.failures)).max(now);
        (next < self.deadline).then_some(next)
    }
}

/// Timing of new-connection attempts after a session loss (B22): first at once, then per the
/// reconnect retry policy.
#[derive(Debug, Clone)]
pub(crate) struct ReconnectPlan {
    retries: u32,
    policy: RetryPolicy,
}

impl ReconnectPlan {
    pub(crate) fn new(policy: RetryPolicy) -> ReconnectPlan {
        ReconnectPlan { retries: 0, policy }
    }

    /// After a failed attempt: when to try again, or `None` when retries are exhausted.
    pub(crate) fn next_try(&mut self, now: Instant) -> Option<Instant> {
        self.retries = self.retries.saturating_add(1);
        self.policy.delay_for(self.retries).map(|d| now + d)
    }
}

/// Sequence ids of the reliable protocol (B20, B31).
#[derive(Debug, Default, Clone)]
pub(crate) struct Sequence {
    largest: u64,
    acked: u64,
    since_ack: u32,
    due: Option<Instant>,
}

/// Send a `sequenceAck` at once when this many new messages arrived since the last one.
pub(crate) const SEQUENCE_ACK_BATCH: u32 = 300;
/// Send a `sequenceAck` at most this long after something new arrived.
pub(crate) const SEQUENCE_ACK_DELAY: Duration = Duration::from_secs(1);

impl Sequence {
    /// A message arrived; `false` means it is a redelivery to drop silently (B20).
    pub(crate) fn on_message(&mut self, sequence_id: Option<u64>, now: Instant) -> bool {
        let Some(id) = sequence_id else {
            return true;
        };
        let fresh = id > self.largest;
        if fresh {
            self.largest = id;
            self.since_ack += 1;
        } else {
            // The service resends what it thinks we lack: our last ack did not reach it.
            self.acked = self.acked.min(id.saturating_sub(1));
        }
        if self.since_ack >= SEQUENCE_ACK_BATCH {
            self.due = Some(now);
        } else if self.due.is_none() {
            self.due = Some(now + SEQUENCE_ACK_DELAY);
        }
        fresh
    }

    /// The id to acknowledge now, if an ack is due.
    pub(crate) fn ack_due(&self, now: Instant) -> Option<u64> {
        match self.due {
            Some(due) if due <= now && self.largest > 0 && self.largest > self.acked => {
                Some(self.largest)
            }
            _ => None,
        }
    }

    /// When the next ack is due, for the poll timeout.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.due.filter(|_| self.largest > self.acked)
    }

    /// The ack for `id` was written.
    pub(crate) fn acked(&mut self, id: u64) {
        self.acked = id;
        self.since_ack = 0;
        self.due = None;
    }

    /// After a recovery: tell the service soon where we are, in case our last ack was lost.
    pub(crate) fn on_recovered(&mut self, now: Instant) {
        if self.largest > 0 {
            self.acked = 0;
            self.due = Some(now);
        }
    }

    /// A new session starts counting from 1 (B19).
    pub(crate) fn reset(&mut self) {
        *self = Sequence::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivered_message_is_dropped() {
        // B20
        let now = Instant::now();
        let mut q = Sequence::default();
        assert!(q.on_message(Some(1), now));
        assert!(q.on_message(Some(2), now));
        assert!(!q.on_message(Some(2), now));
        assert!(!q.on_message(Some(1), now));
        assert!(q.on_message(Some(3), now));
        assert!(q.on_message(None, now), "no sequence id: plain protocol");
    }

    #[test]
    fn sequence_ack_is_sent_within_a_second() {
        // B31
        let now = Instant::now();
        let mut q = Sequence::default();
        assert_eq!(q.deadline(), None);
        q.on_message(Some(1), now);
        assert_eq!(q.ack_due(now), None);
        assert_eq!(q.deadline(), Some(now + SEQUENCE_ACK_DELAY));
        q.on_message(Some(2), now + Duration::from_millis(500));
        assert_eq!(
            q.deadline(),
            Some(now + SEQUENCE_ACK_DELAY),
            "not pushed back"
        );
        assert_eq!(q.ack_due(now + SEQUENCE_ACK_DELAY), Some(2));
        q.acked(2);
        assert_eq!(q.deadline(), None);
        assert_eq!(q.ack_due(now + Duration::from_secs(5)), None);
    }

    #[test]
    fn sequence_ack_is_sent_at_once_after_many_messages() {
        // B31
        let now = Instant::now();
        let mut q = Sequence::default();
        for i in 1..SEQUENCE_ACK_BATCH as u64 {
            q.on_message(Some(i), now);
        }
        assert_eq!(q.ack_due(now), None);
        q.on_message(Some(SEQUENCE_ACK_BATCH as u64), now);
        assert_eq!(q.ack_due(now), Some(SEQUENCE_ACK_BATCH as u64));
    }

    #[test]
    fn unsent_sequence_ack_stays_due() {
        // B31: an ack that could not be written is tried again on the next tick.
        let now = Instant::now();
        let mut q = Sequence::default();
        q.on_message(Some(1), now);
        let later = now + Duration::from_secs(2);
        assert_eq!(q.ack_due(later), Some(1));
        assert_eq!(q.ack_due(later + Duration::from_millis(1)), Some(1));
    }

    #[test]
    fn redelivery_and_recovery_make_the_ack_due_again() {
        // B20, B31
        let now = Instant::now();
        let mut q = Sequence::default();
        q.on_message(Some(5), now);
        q.acked(5);
        assert!(!q.on_message(Some(4), now));
        assert_eq!(q.ack_due(now + SEQUENCE_ACK_DELAY), Some(5));
        q.acked(5);
        q.on_recovered(now);
        assert_eq!(q.ack_due(now), Some(5));
        q.reset();
        assert!(q.on_message(Some(1), now), "a new session counts from 1");
    }

    #[test]
    fn recovery_pauses_grow_from_milliseconds_to_the_interval() {
        // B46: 5 ms, 10 ms, 20 ms, ... doubling, capped at the interval.
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut plan = RecoveryPlan::new(t0, Duration::from_secs(30), Duration::from_secs(1));
        let pauses: Vec<Duration> = (0..12)
            .map(|_| plan.next_try(t0, t0, None).unwrap() - t0)
            .collect();
        assert_eq!(
            pauses,
            [
                ms(5),
                ms(10),
                ms(20),
                ms(40),
                ms(80),
                ms(160),
                ms(320),
                ms(640),
                ms(1000),
                ms(1000),
                ms(1000),
                ms(1000)
            ]
        );
        // A short interval caps the very first pause.
        let mut plan = RecoveryPlan::new(t0, Duration::from_secs(30), ms(3));
        assert_eq!(plan.next_try(t0, t0, None), Some(t0 + ms(3)));
        // Many failures do not overflow.
        let mut plan = RecoveryPlan::new(t0, Duration::from_secs(30), Duration::from_secs(1));
        for _ in 0..100 {
            assert!(plan.next_try(t0, t0, None).unwrap() <= t0 + Duration::from_secs(1));
        }
    }

    #[test]
    fn recovery_pauses_count_from_the_attempt_and_end_with_the_window() {
        // B18, B46
        let t0 = Instant::now();
        let mut plan = RecoveryPlan::new(t0, Duration::from_secs(30), Duration::from_secs(1));
        assert_eq!(
            plan.next_try(t0, t0 + Duration::from_millis(1), None),
            Some(t0 + Duration::from_millis(5))
        );
        // An attempt that took longer than its pause to fail is followed at once.
        let late = t0 + Duration::from_secs(5);
        assert_eq!(plan.next_try(t0, late, Some(1006)), Some(late));
        let end = t0 + Duration::from_secs(29) + Duration::from_millis(999);
        assert_eq!(plan.next_try(end, end, None), None, "past the window");
    }

    #[test]
    fn recovery_not_tried_after_close_1008() {
        // B18
        let t0 = Instant::now();
        let mut plan = RecoveryPlan::new(t0, Duration::from_secs(30), Duration::from_secs(1));
        assert_eq!(plan.next_try(t0, t0, Some(1008)), None);
    }

    #[test]
    fn reconnect_follows_the_retry_policy_until_exhausted() {
        // B22
        let now = Instant::now();
        let mut p = ReconnectPlan::new(RetryPolicy::fixed(Duration::from_millis(100), 2));
        assert_eq!(p.next_try(now), Some(now + Duration::from_millis(100)));
        assert_eq!(p.next_try(now), Some(now + Duration::from_millis(100)));
        assert_eq!(p.next_try(now), None);
    }
}
