//! The local rate limit: one GCRA bucket per key (governor's keyed limiter), in
//! this process only. Buckets of keys that went quiet are dropped once the key
//! space grows past a high-water mark, so a flood of distinct keys (spoofed
//! headers, many clients) cannot grow memory without bound.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::Decision;
use super::key::Key;

type Limiter =
    RateLimiter<Key, DefaultKeyedStateStore<Key>, DefaultClock, StateInformationMiddleware>;

/// How often (in decisions) the key space size is looked at.
const CHECK_EVERY: u64 = 1024;
/// Below this many keys, nothing is cleaned.
const MIN_HIGH_WATER: usize = 4096;

#[derive(Debug)]
pub struct Local {
    limiter: Limiter,
    /// One token's worth of time (`per / requests`).
    interval: Duration,
    burst: u32,
    decisions: AtomicU64,
    /// Key count above which quiet buckets are dropped.
    high_water: AtomicUsize,
}

impl Local {
    pub fn new(burst: u32, interval: Duration) -> Result<Self, String> {
        let burst_nz = NonZeroU32::new(burst).ok_or("burst must be at least 1")?;
        let quota = Quota::with_period(interval)
            .ok_or("per / requests must be longer than 0")?
            .allow_burst(burst_nz);
        Ok(Local {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            interval,
            burst,
            decisions: AtomicU64::new(0),
            high_water: AtomicUsize::new(MIN_HIGH_WATER),
        })
    }

    pub fn check(&self, key: &Key) -> Decision {
        self.housekeeping();
        match self.limiter.check_key(key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision::Allowed {
                    remaining,
                    // The bucket is full again once the spent tokens have refilled.
                    reset: times(self.interval, self.burst - remaining.min(self.burst)),
                }
            }
            Err(not_until) => {
                let retry = not_until.wait_time_from(self.limiter.clock().now());
                Decision::Limited {
                    retry,
                    reset: retry.saturating_add(times(self.interval, self.burst - 1)),
                }
            }
        }
    }

    /// Every `CHECK_EVERY` decisions: past the high-water mark, drop the buckets
    /// that are full again (indistinguishable from a new key), then raise the mark
    /// to twice what is left so a large live key space is not rescanned constantly.
    fn housekeeping(&self) {
        if self.decisions.fetch_add(1, Ordering::Relaxed) % CHECK_EVERY != CHECK_EVERY - 1 {
            return;
        }
        if self.limiter.len() <= self.high_water.load(Ordering::Relaxed) {
            return;
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let left = self.limiter.len();
        self.high_water
            .store((left * 2).max(MIN_HIGH_WATER), Ordering::Relaxed);
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.limiter.len()
    }
}

/// `d × n`, saturating (absurd windows must not panic).
pub fn times(d: Duration, n: u32) -> Duration {
    d.checked_mul(n).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn ip(n: u32) -> Key {
        Key::Ip(IpAddr::V4(Ipv4Addr::from(n)))
    }

    #[test]
    fn bucket_counts_down_then_refuses_with_retry() {
        let l = Local::new(3, Duration::from_secs(20)).unwrap();
        let k = ip(1);
        for left in [2, 1, 0] {
            match l.check(&k) {
                Decision::Allowed { remaining, reset } => {
                    assert_eq!(remaining, left);
                    assert_eq!(reset, Duration::from_secs(20) * (3 - left));
                }
                d => panic!("expected allowed, got {d:?}"),
            }
        }
        match l.check(&k) {
            Decision::Limited { retry, reset } => {
                assert!(retry > Duration::from_secs(19) && retry <= Duration::from_secs(20));
                assert!(reset > Duration::from_secs(59) && reset <= Duration::from_secs(60));
            }
            d => panic!("expected limited, got {d:?}"),
        }
        assert!(
            matches!(l.check(&ip(2)), Decision::Allowed { remaining: 2, .. }),
            "another key has its own bucket"
        );
    }

    #[test]
    fn a_flood_of_distinct_keys_is_cleaned_up() {
        // 1 token per 100 ms: a bucket is full again (and droppable) soon after
        // its only request.
        let l = Local::new(1, Duration::from_millis(100)).unwrap();
        let wave = 3 * MIN_HIGH_WATER as u32;
        for n in 0..wave {
            l.check(&ip(n));
        }
        // Time passes (this is what is being tested, not a synchronisation).
        std::thread::sleep(Duration::from_millis(250));
        for n in wave..2 * wave {
            l.check(&ip(n));
        }
        assert!(
            l.keys() <= wave as usize,
            "the first wave's buckets were dropped: {} keys left of {}",
            l.keys(),
            2 * wave
        );
    }
}
