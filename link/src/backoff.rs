//! The one retry rule: exponential backoff with equal jitter.
//!
//! The n-th retry waits a random time between half of and the whole of `first x 2^n`, capped at `max`. Half
//! the ceiling is always waited, so a retry never spins; the other half is random, so ten thousand phones that
//! lost the same broker at the same moment do not come back at the same moment.

use std::time::Duration;

use rand::Rng;

/// How long to wait before a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's pause.
    pub first: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// Reconnecting to the broker: from 200 ms up to 15 s.
    pub const RECONNECT: Backoff = Backoff { first: Duration::from_millis(200), max: Duration::from_secs(15) };

    /// The ceiling of the pause before retry number `retry` (0 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let first = u64::try_from(self.first.as_millis()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.max.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(first.saturating_mul(1u64 << retry.min(16)).min(max).max(1))
    }

    /// The pause before retry number `retry` (0 for the first retry): between half the ceiling and all of it.
    pub fn pause(&self, retry: u32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(ceiling / 2 + rand::thread_rng().gen_range(0..=ceiling - ceiling / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_never_fall_below_half() {
        let b = Backoff { first: Duration::from_millis(100), max: Duration::from_secs(1) };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_secs(1));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
        for retry in 0..40 {
            let (pause, ceiling) = (b.pause(retry), b.ceiling(retry));
            assert!(pause >= ceiling / 2 && pause <= ceiling, "retry {retry}: {pause:?} of {ceiling:?}");
        }
    }

    #[test]
    fn a_zero_backoff_still_yields() {
        let b = Backoff { first: Duration::ZERO, max: Duration::ZERO };
        assert_eq!(b.ceiling(5), Duration::from_millis(1));
        assert!(b.pause(5) <= Duration::from_millis(1));
    }

    #[test]
    fn huge_settings_do_not_overflow() {
        let b = Backoff { first: Duration::from_secs(u64::MAX), max: Duration::MAX };
        assert_eq!(b.ceiling(16), Duration::from_millis(u64::MAX));
        let _ = b.pause(16);
    }

    #[test]
    fn reconnects_start_small_and_stay_under_fifteen_seconds() {
        assert!(Backoff::RECONNECT.pause(0) <= Duration::from_millis(200));
        assert_eq!(Backoff::RECONNECT.ceiling(30), Duration::from_secs(15));
    }
}
