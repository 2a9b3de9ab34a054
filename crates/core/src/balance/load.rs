//! Live per-endpoint load signals: the in-flight request count and the peak-EWMA
//! latency estimate. Shared by every request to an endpoint through an
//! `Arc<EndpointLoad>`, updated with atomics only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How quickly old latency samples lose their influence: after `tau` of silence a
/// new sample carries 1 - 1/e (~63%) of the weight. Ten seconds is long enough to
/// ride out single slow requests and short enough to notice a degraded endpoint
/// within a few seconds of traffic (the peak rule reacts to spikes at once anyway).
pub const DEFAULT_TAU: Duration = Duration::from_secs(10);

/// The latency assumed for an endpoint that has not answered yet. Low on purpose:
/// new (and long idle) endpoints should look attractive so they get probed, and
/// their first real sample replaces this guess outright.
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(1);

/// Stored latency bits meaning "no sample yet". `0.0` cannot be a real estimate
/// because samples are clamped to at least 1 ns.
const UNOBSERVED: u64 = 0;

/// Live load signals for one endpoint.
///
/// All fields are independent atomics updated with `Relaxed` ordering: they are
/// heuristics read by the balancer, nothing else is published through them, and
/// a reader seeing a slightly stale or torn (value from one update, timestamp from
/// another) combination only makes one pick marginally worse.
///
/// Aligned to a cache line so that the counters of different endpoints, which are
/// written by every request, never share a line (false sharing would make
/// unrelated endpoints contend).
#[repr(align(64))]
#[derive(Debug)]
pub struct EndpointLoad {
    in_flight: AtomicU32,
    /// Peak-EWMA latency estimate in nanoseconds, as `f64` bits; `UNOBSERVED`
    /// until the first sample.
    latency_bits: AtomicU64,
    /// When `latency_bits` last absorbed a sample, in ns since `epoch`.
    updated_ns: AtomicU64,
    /// Monotonic origin for `updated_ns`; per endpoint so no global state is needed.
    epoch: Instant,
    tau_ns: f64,
}

impl Default for EndpointLoad {
    fn default() -> Self {
        Self::new()
    }
}

impl EndpointLoad {
    /// A fresh, idle, never-observed endpoint with the default decay time `DEFAULT_TAU`.
    pub fn new() -> Self {
        Self::with_tau(DEFAULT_TAU)
    }

    /// Like [`EndpointLoad::new`] with a custom EWMA time constant (a zero `tau` is
    /// treated as 1 ns: every sample then replaces the estimate).
    pub fn with_tau(tau: Duration) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            latency_bits: AtomicU64::new(UNOBSERVED),
            updated_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            tau_ns: (tau.as_nanos() as f64).max(1.0),
        }
    }

    /// Counts a request as in flight until the returned guard is dropped. The guard
    /// owns an `Arc`, so it can be held across `.await` points and moved between tasks.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight {
            load: Arc::clone(self),
        }
    }

    /// Requests currently in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// Feeds one round-trip time into the peak-EWMA estimate, timestamped now.
    pub fn observe_latency(&self, rtt: Duration) {
        self.observe_latency_at(rtt, Instant::now());
    }

    /// [`EndpointLoad::observe_latency`] with an explicit clock reading, for callers
    /// that already hold the request's end `Instant` (and for tests).
    ///
    /// A sample above the current estimate replaces it at once (so a degrading
    /// endpoint is avoided immediately); a lower one is blended in with weight
    /// `1 - exp(-elapsed / tau)`, so recovery is gradual and a long gap trusts the
    /// new sample more. The first sample ever replaces the default guess.
    ///
    /// Concurrency: the timestamp is advanced with `fetch_max`, so each stretch of
    /// elapsed time is credited to exactly one sample and time never runs backwards;
    /// the estimate itself is updated with a compare-and-swap loop, so no sample is
    /// lost. The two are not updated as one unit: a racing pair of observers may
    /// blend with each other's elapsed time. That error is bounded by the gap between
    /// two nearly simultaneous completions and is harmless for a load heuristic.
    pub fn observe_latency_at(&self, rtt: Duration, now: Instant) {
        let sample = (rtt.as_nanos() as f64).max(1.0);
        let now_ns = self.ns_since_epoch(now);
        let prev_ns = self.updated_ns.fetch_max(now_ns, Relaxed);
        let elapsed = now_ns.saturating_sub(prev_ns) as f64;
        let keep = (-elapsed / self.tau_ns).exp();
        // The closure always returns `Some`, so this cannot fail; ignoring the
        // result keeps the hot path free of a panic branch.
        let _ = self.latency_bits.fetch_update(Relaxed, Relaxed, |bits| {
            let current = f64::from_bits(bits);
            let next = if bits == UNOBSERVED || sample >= current {
                sample
            } else {
                current * keep + sample * (1.0 - keep)
            };
            Some(next.to_bits())
        });
    }

    /// The latency estimate in nanoseconds as of now (see
    /// [`EndpointLoad::latency_estimate_at`]).
    pub fn latency_estimate(&self) -> f64 {
        self.latency_estimate_at(Instant::now())
    }

    /// The latency estimate in nanoseconds at `now`.
    ///
    /// Without fresh samples the stored estimate relaxes toward `DEFAULT_LATENCY`
    /// with the same time constant. Without this, one latency spike on an endpoint
    /// that then stops being picked (P2C never picks an endpoint that always loses)
    /// would exclude it forever; relaxing lets it be probed again, and a real slow
    /// sample puts it straight back. Reads never write, so picking does not bounce
    /// the cache line between cores.
    pub fn latency_estimate_at(&self, now: Instant) -> f64 {
        let default = DEFAULT_LATENCY.as_nanos() as f64;
        let bits = self.latency_bits.load(Relaxed);
        if bits == UNOBSERVED {
            return default;
        }
        let stored = f64::from_bits(bits);
        let idle = self
            .ns_since_epoch(now)
            .saturating_sub(self.updated_ns.load(Relaxed)) as f64;
        let keep = (-idle / self.tau_ns).exp();
        stored * keep + default * (1.0 - keep)
    }

    /// Peak-EWMA cost: latency estimate (ns) × (in-flight + 1). The `+ 1` counts the
    /// request being placed, so an idle endpoint's cost is its latency and queued
    /// work on a fast endpoint is still weighed against a slow idle one.
    pub fn ewma_cost(&self) -> f64 {
        self.ewma_cost_at(Instant::now())
    }

    /// [`EndpointLoad::ewma_cost`] at an explicit clock reading, so one `Instant`
    /// can serve both candidates of a pick.
    pub fn ewma_cost_at(&self, now: Instant) -> f64 {
        self.latency_estimate_at(now) * (f64::from(self.in_flight()) + 1.0)
    }

    fn ns_since_epoch(&self, now: Instant) -> u64 {
        // u64 nanoseconds cover 584 years of uptime; saturate rather than wrap.
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// One in-flight request on an endpoint; decrements the count when dropped.
#[derive(Debug)]
#[must_use = "the request stops counting as in flight as soon as the guard is dropped"]
pub struct InFlight {
    load: Arc<EndpointLoad>,
}

impl InFlight {
    /// The endpoint this request counts against, e.g. to report its latency.
    pub fn load(&self) -> &Arc<EndpointLoad> {
        &self.load
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.load.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1_000_000.0;

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 1e-9
    }

    #[test]
    fn in_flight_guard_counts_up_and_down() {
        let load = Arc::new(EndpointLoad::new());
        assert_eq!(load.in_flight(), 0);
        let a = load.start();
        let b = load.start();
        assert_eq!(load.in_flight(), 2);
        assert!(Arc::ptr_eq(a.load(), &load));
        drop(a);
        assert_eq!(load.in_flight(), 1);
        drop(b);
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn in_flight_guard_is_send_and_owned() {
        fn assert_send_static<T: Send + 'static>(_: &T) {}
        let load = Arc::new(EndpointLoad::new());
        let guard = load.start();
        assert_send_static(&guard);
        std::thread::spawn(move || drop(guard)).join().unwrap();
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn concurrent_guards_balance_out() {
        let load = Arc::new(EndpointLoad::new());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        let _g = load.start();
                    }
                });
            }
        });
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn unobserved_endpoint_uses_default_latency() {
        let load = EndpointLoad::new();
        let default = DEFAULT_LATENCY.as_nanos() as f64;
        assert_eq!(load.latency_estimate(), default);
        assert_eq!(load.ewma_cost(), default);
    }

    #[test]
    fn first_sample_replaces_default_even_if_lower() {
        let load = EndpointLoad::new();
        let t = load.epoch + Duration::from_secs(1);
        load.observe_latency_at(Duration::from_micros(100), t);
        assert!(close(load.latency_estimate_at(t), 0.1 * MS));
    }

    #[test]
    fn cost_scales_with_in_flight() {
        let load = Arc::new(EndpointLoad::new());
        let t = load.epoch;
        load.observe_latency_at(Duration::from_millis(2), t);
        let _g: Vec<_> = (0..3).map(|_| load.start()).collect();
        assert!(close(load.ewma_cost_at(t), 2.0 * MS * 4.0));
    }

    #[test]
    fn spike_raises_estimate_immediately() {
        let load = EndpointLoad::new();
        let t0 = load.epoch;
        load.observe_latency_at(Duration::from_millis(1), t0);
        // Even a spike that arrives right away (zero elapsed) wins outright.
        load.observe_latency_at(Duration::from_millis(50), t0);
        assert!(close(load.latency_estimate_at(t0), 50.0 * MS));
    }

    #[test]
    fn lower_samples_decay_toward_the_sample_with_tau() {
        let load = EndpointLoad::new();
        let t0 = load.epoch + Duration::from_secs(5);
        load.observe_latency_at(Duration::from_millis(50), t0);

        // One tau later a 1 ms sample gets weight 1 - 1/e.
        let t1 = t0 + DEFAULT_TAU;
        load.observe_latency_at(Duration::from_millis(1), t1);
        let keep = (-1.0f64).exp();
        let expected = 50.0 * MS * keep + 1.0 * MS * (1.0 - keep);
        assert!(close(load.latency_estimate_at(t1), expected));

        // A sample with no elapsed time does not move a higher estimate at all...
        load.observe_latency_at(Duration::from_millis(1), t1);
        assert!(close(load.latency_estimate_at(t1), expected));

        // ...while steady fast samples bring it back close to the truth.
        let mut t = t1;
        for _ in 0..100 {
            t += Duration::from_secs(1);
            load.observe_latency_at(Duration::from_millis(1), t);
        }
        let settled = load.latency_estimate_at(t);
        assert!(settled < 1.01 * MS, "settled at {settled}");
        assert!(settled >= 1.0 * MS);
    }

    #[test]
    fn out_of_order_timestamps_do_not_rewind_the_clock() {
        let load = EndpointLoad::new();
        let t0 = load.epoch + Duration::from_secs(10);
        load.observe_latency_at(Duration::from_millis(10), t0);
        // An observer that read the clock earlier but lost the race: zero elapsed,
        // so it cannot drag the estimate down.
        load.observe_latency_at(Duration::from_millis(1), t0 - Duration::from_secs(5));
        assert!(close(load.latency_estimate_at(t0), 10.0 * MS));
        assert_eq!(load.updated_ns.load(Relaxed), load.ns_since_epoch(t0));
    }

    #[test]
    fn idle_estimate_relaxes_toward_default() {
        let load = EndpointLoad::new();
        let t0 = load.epoch;
        load.observe_latency_at(Duration::from_millis(50), t0);
        assert!(close(load.latency_estimate_at(t0), 50.0 * MS));
        let keep = (-3.0f64).exp();
        let later = load.latency_estimate_at(t0 + 3 * DEFAULT_TAU);
        assert!(close(later, 50.0 * MS * keep + 1.0 * MS * (1.0 - keep)));
        let much_later = load.latency_estimate_at(t0 + 100 * DEFAULT_TAU);
        assert!(close(much_later, 1.0 * MS));
    }

    #[test]
    fn custom_tau_changes_the_decay_rate() {
        let load = EndpointLoad::with_tau(Duration::from_secs(1));
        let t0 = load.epoch;
        load.observe_latency_at(Duration::from_millis(50), t0);
        let t1 = t0 + Duration::from_secs(1);
        load.observe_latency_at(Duration::from_millis(1), t1);
        let keep = (-1.0f64).exp();
        assert!(close(
            load.latency_estimate_at(t1),
            50.0 * MS * keep + MS * (1.0 - keep)
        ));
    }
}
