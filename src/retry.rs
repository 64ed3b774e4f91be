//! Retry policies: how often to try again and how long to wait in between, for requests
//! (message retry, B26) and new connections (reconnect, B22). Pure arithmetic on durations.

use std::time::Duration;

/// How delays between retries grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryMode {
    /// The same delay before every retry.
    Fixed,
    /// The delay doubles with every retry: `delay × 2^(retry-1)`, capped at `max_delay`.
    Exponential,
}

/// How often and how long to wait before trying again.
///
/// ```
/// use std::time::Duration;
/// use webpubsub_client::RetryPolicy;
/// let p = RetryPolicy::exponential(Duration::from_millis(800), 3);
/// assert_eq!(p.delay_for(1), Some(Duration::from_millis(800)));
/// assert_eq!(p.delay_for(3), Some(Duration::from_millis(3200)));
/// assert_eq!(p.delay_for(4), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Fixed or exponential delays.
    pub mode: RetryMode,
    /// How many retries after the first try; `u32::MAX` means without limit.
    pub max_retries: u32,
    /// The delay before the first retry (the base of exponential growth).
    pub delay: Duration,
    /// No delay is longer than this.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The same `delay` before each of at most `max_retries` retries.
    pub fn fixed(delay: Duration, max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            mode: RetryMode::Fixed,
            max_retries,
            delay,
            max_delay: delay,
        }
    }

    /// Delays `base`, `2·base`, `4·base`, … (capped at 120 s) before each of at most
    /// `max_retries` retries.
    pub fn exponential(base: Duration, max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            mode: RetryMode::Exponential,
            max_retries,
            delay: base,
            max_delay: Duration::from_secs(120),
        }
    }

    /// No retries at all.
    pub fn none() -> RetryPolicy {
        RetryPolicy::fixed(Duration::ZERO, 0)
    }

    /// Caps every delay at `max_delay`.
    pub fn with_max_delay(mut self, max_delay: Duration) -> RetryPolicy {
        self.max_delay = max_delay;
        self
    }

    /// The delay before retry number `retry` (1 for the first retry), or `None` when the
    /// policy allows no more retries.
    pub fn delay_for(&self, retry: u32) -> Option<Duration> {
        if retry == 0 || retry > self.max_retries {
            return None;
        }
        let d = match self.mode {
            RetryMode::Fixed => self.delay,
            RetryMode::Exponential => {
                let factor = 1u32.checked_shl(retry - 1).unwrap_or(u32::MAX);
                self.delay.saturating_mul(factor)
            }
        };
        Some(d.min(self.max_delay))
    }
}

/// The message retry default: exponential from 0.8 s, 3 retries, at most 120 s apart.
impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy::exponential(Duration::from_millis(800), 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_policy_doubles_and_caps() {
        let p = RetryPolicy::exponential(Duration::from_secs(1), 10)
            .with_max_delay(Duration::from_secs(5));
        let delays: Vec<_> = (1..=5).map(|r| p.delay_for(r).unwrap().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert_eq!(p.delay_for(11), None);
    }

    #[test]
    fn fixed_policy_repeats_its_delay_until_exhausted() {
        let p = RetryPolicy::fixed(Duration::from_millis(10), 2);
        assert_eq!(p.delay_for(1), Some(Duration::from_millis(10)));
        assert_eq!(p.delay_for(2), Some(Duration::from_millis(10)));
        assert_eq!(p.delay_for(3), None);
        assert_eq!(RetryPolicy::none().delay_for(1), None);
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        let p = RetryPolicy::exponential(Duration::from_secs(1), u32::MAX);
        assert_eq!(p.delay_for(200), Some(Duration::from_secs(120)));
    }

    #[test]
    fn default_message_retry_is_three_exponential_retries_from_800ms() {
        let p = RetryPolicy::default();
        assert_eq!(p.mode, RetryMode::Exponential);
        assert_eq!(p.max_retries, 3);
        assert_eq!(p.delay, Duration::from_millis(800));
        assert_eq!(p.max_delay, Duration::from_secs(120));
    }
}
