//! Reconnect delays: exponential with full jitter. Each failed attempt doubles the
//! ceiling (from `initial` up to `cap`) and the delay is uniform in `[0, ceiling]`,
//! so proxies that lost the same control plane do not come back in lockstep.

use std::time::Duration;

/// Delay bounds for reconnecting to the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    /// 100 ms, doubling up to 10 s.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            cap: Duration::from_secs(10),
        }
    }
}

/// The attempt counter of one reconnecting client.
#[derive(Debug)]
pub(crate) struct Attempts {
    bounds: Backoff,
    failures: u32,
}

impl Attempts {
    pub(crate) fn new(bounds: Backoff) -> Self {
        Attempts {
            bounds,
            failures: 0,
        }
    }

    /// After a stream that delivered a snapshot: the next attempt starts low again.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }

    fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.bounds
            .initial
            .checked_mul(factor)
            .map_or(self.bounds.cap, |d| d.min(self.bounds.cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_reset() {
        let mut a = Attempts::new(Backoff::default());
        assert_eq!(a.ceiling(), Duration::from_millis(100));
        for _ in 0..3 {
            assert!(a.next_delay() <= a.bounds.cap);
        }
        assert_eq!(a.ceiling(), Duration::from_millis(800));
        for _ in 0..100 {
            assert!(a.next_delay() <= Duration::from_secs(10));
        }
        assert_eq!(a.ceiling(), Duration::from_secs(10));
        a.reset();
        assert_eq!(a.ceiling(), Duration::from_millis(100));
    }
}
