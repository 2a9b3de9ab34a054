//! Outlier detection (passive health): every upstream try reports its outcome on
//! its endpoint, and endpoints that fail real traffic are ejected for a while.
//!
//! - **Consecutive failures.** `consecutive5xx` 5xx responses in a row, or
//!   `consecutiveFailures` connect failures / resets / timeouts in a row, eject the
//!   endpoint (0 disables either). A success resets both counters.
//! - **Failure rate.** Per endpoint, requests and failures are counted over
//!   `failureRate.window`; at each window end the sweeper ejects endpoints with at
//!   least `minimumRequests` requests and `failures × 100 / requests ≥
//!   thresholdPercent`, then resets the counters.
//! - **Duration.** The n-th ejection of an endpoint lasts `min(base × n, max)`. The
//!   multiplier starts over once an endpoint has stayed back for `maxEjectionTime`.
//!   Ejected endpoints come back by themselves: a pick compares a monotonic clock
//!   with `ejected_until`, and the sweeper ends lapsed ejections (and resets the
//!   `endpoint_ejected` gauge) at least every 250 ms even without traffic.
//! - **Cap.** An ejection that would make more than `maxEjectionPercent` % of the
//!   service's endpoints ejected, or all of them, does not happen.
//!
//! The request path only does atomic adds, loads and compare-and-swaps.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use meshgate_config as config;
use prometheus_client::metrics::counter::Counter;

use super::state::{ServiceHealth, now_ms};

/// How a try ended, as outlier detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A 5xx response.
    Status5xx,
    /// Connect failure, reset or per-try timeout.
    LocalFailure,
}

/// A service's outlier detection settings, compiled.
#[derive(Debug)]
pub struct Outlier {
    consecutive_5xx: u32,
    consecutive_failures: u32,
    base_ms: u64,
    max_ms: u64,
    max_percent: u32,
    /// `(thresholdPercent, minimumRequests, window)`.
    rate: Option<(u32, u32, Duration)>,
    pub(super) ejections: Counter,
}

impl Outlier {
    pub fn new(c: &config::OutlierDetection, ejections: Counter) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            consecutive_5xx: c.consecutive_5xx,
            consecutive_failures: c.consecutive_failures,
            base_ms: ms(c.base_ejection_time.get()).max(1),
            max_ms: ms(c.max_ejection_time.get()).max(1),
            max_percent: c.max_ejection_percent,
            rate: c
                .failure_rate
                .as_ref()
                .map(|r| (r.threshold_percent, r.minimum_requests, r.window.get())),
            ejections,
        }
    }

    /// Records one try's outcome on endpoint `i`, ejecting it if that was one
    /// failure too many.
    pub fn record(&self, health: &ServiceHealth, i: usize, outcome: Outcome) {
        let s = health.state(i);
        if self.rate.is_some() {
            s.window_requests.fetch_add(1, Relaxed);
            if outcome != Outcome::Success {
                s.window_failures.fetch_add(1, Relaxed);
            }
        }
        let (counter, limit, why) = match outcome {
            Outcome::Success => {
                // Load first: writing a zero that is already there would still
                // bounce the cache line between cores.
                for c in [&s.consecutive_5xx, &s.consecutive_failures] {
                    if c.load(Relaxed) != 0 {
                        c.store(0, Relaxed);
                    }
                }
                return;
            }
            Outcome::Status5xx => (&s.consecutive_5xx, self.consecutive_5xx, "consecutive 5xx"),
            Outcome::LocalFailure => (
                &s.consecutive_failures,
                self.consecutive_failures,
                "consecutive connect failures, resets or timeouts",
            ),
        };
        let n = counter.fetch_add(1, Relaxed) + 1;
        if limit != 0 && n >= limit {
            self.eject(health, i, why);
        }
    }

    /// Ejects endpoint `i` unless it already is or the cap forbids it. Returns
    /// whether it did.
    pub fn eject(&self, health: &ServiceHealth, i: usize, why: &str) -> bool {
        self.eject_at(health, i, why, now_ms())
    }

    /// [`Outlier::eject`] at clock reading `now` (a [`now_ms`] value).
    pub(super) fn eject_at(&self, health: &ServiceHealth, i: usize, why: &str, now: u64) -> bool {
        health.settle(now);
        let s = health.state(i);
        if s.ejected_until.load(Relaxed) != 0 {
            return false;
        }
        // Count first, check, undo: concurrent ejections can never together pass
        // the cap.
        let after = health.ejected.fetch_add(1, Relaxed) + 1;
        if !within_cap(after, health.len(), self.max_percent) {
            health.ejected.fetch_sub(1, Relaxed);
            return false;
        }
        if now.saturating_sub(s.last_until.load(Relaxed)) >= self.max_ms {
            s.ejections.store(0, Relaxed);
        }
        let n = s.ejections.fetch_add(1, Relaxed) + 1;
        let until = now + ejection_ms(self.base_ms, self.max_ms, n);
        if s.ejected_until
            .compare_exchange(0, until, Relaxed, Relaxed)
            .is_err()
        {
            // Someone else ejected it meanwhile; theirs stands.
            s.ejections.fetch_sub(1, Relaxed);
            health.ejected.fetch_sub(1, Relaxed);
            return false;
        }
        s.last_until.store(until, Relaxed);
        s.consecutive_5xx.store(0, Relaxed);
        s.consecutive_failures.store(0, Relaxed);
        self.ejections.inc();
        if let Some(g) = &s.ejected_gauge {
            g.set(1);
        }
        tracing::warn!(
            service = %health.service, endpoint = %s.address, reason = why,
            ejection = n, seconds = (until - now) as f64 / 1000.0,
            "ejecting endpoint (outlier detection)"
        );
        true
    }

    /// Ends lapsed ejections every 250 ms and, with a failure rate, judges every
    /// endpoint at each window end. Runs until aborted.
    pub async fn sweep(self: Arc<Self>, health: Arc<ServiceHealth>) {
        use tokio::time::{Interval, MissedTickBehavior, interval};
        fn every(period: Duration) -> Interval {
            let mut t = interval(period);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        }
        async fn tick(t: &mut Option<Interval>) {
            match t {
                Some(t) => drop(t.tick().await),
                None => std::future::pending().await,
            }
        }
        let mut settle = every(Duration::from_millis(250));
        let mut window = self.rate.map(|(_, _, w)| every(w));
        if let Some(w) = &mut window {
            // The first tick is immediate: the first window starts now.
            w.tick().await;
        }
        loop {
            tokio::select! {
                _ = settle.tick() => health.settle(now_ms()),
                _ = tick(&mut window) => self.judge_window(&health),
            }
        }
    }

    /// The failure-rate verdict at a window end.
    pub fn judge_window(&self, health: &ServiceHealth) {
        let Some((threshold, minimum, _)) = self.rate else {
            return;
        };
        for i in 0..health.len() {
            let s = health.state(i);
            let requests = s.window_requests.swap(0, Relaxed);
            let failures = s.window_failures.swap(0, Relaxed);
            if requests > 0
                && requests >= minimum
                && u64::from(failures) * 100 >= u64::from(threshold) * u64::from(requests)
            {
                self.eject(health, i, "failure rate");
            }
        }
    }
}

/// Length of the `n`-th ejection (1-based): `min(base × n, max)`, in ms.
pub fn ejection_ms(base_ms: u64, max_ms: u64, n: u32) -> u64 {
    base_ms.saturating_mul(u64::from(n.max(1))).min(max_ms)
}

/// May `after` of `total` endpoints be ejected at once? Not more than
/// `max_percent` %, and never all of them.
pub fn within_cap(after: u32, total: usize, max_percent: u32) -> bool {
    let total = total as u64;
    let after = u64::from(after);
    after < total && after * 100 <= u64::from(max_percent) * total
}
