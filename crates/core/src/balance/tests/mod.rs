//! Distribution tests for every policy through the public [`Balancer`] API. Random
//! policies seed the thread-local `fastrand` generator first (each test runs on its
//! own thread), so their counts are reproducible; the bounds are still several
//! standard deviations wide, so they hold for any seed, not just the chosen one.

mod ring_hash;

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

const ALL: [LbPolicy; 5] = [
    LbPolicy::RoundRobin,
    LbPolicy::Random,
    LbPolicy::LeastRequest,
    LbPolicy::PeakEwma,
    LbPolicy::RingHash,
];

fn idle_loads(n: usize) -> Vec<Arc<EndpointLoad>> {
    (0..n).map(|_| Arc::new(EndpointLoad::new())).collect()
}

fn counts(b: &Balancer, loads: &[Arc<EndpointLoad>], picks: usize) -> Vec<usize> {
    let mut counts = vec![0; b.len()];
    for _ in 0..picks {
        counts[b.pick(loads, None)] += 1;
    }
    counts
}

fn share(count: usize, total: usize) -> f64 {
    count as f64 / total as f64
}

#[test]
fn balancer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Balancer>();
    assert_send_sync::<EndpointLoad>();
    assert_send_sync::<InFlight>();
}

#[test]
fn single_endpoint_returns_zero_without_rng() {
    let loads = idle_loads(1);
    for policy in ALL {
        let b = Balancer::new(policy, &[7]);
        fastrand::seed(42);
        for hash in [None, Some(0), Some(u64::MAX)] {
            assert_eq!(b.pick(&loads, hash), 0, "{policy:?}");
        }
        // The generator is exactly where seeding left it: no draw happened.
        let next = fastrand::u64(..);
        fastrand::seed(42);
        assert_eq!(next, fastrand::u64(..), "{policy:?} drew a random number");
    }
}

#[test]
fn every_policy_stays_in_bounds() {
    fastrand::seed(1);
    let weights = [3, 1, 4, 1, 5];
    let loads = idle_loads(weights.len());
    for policy in ALL {
        let b = Balancer::new(policy, &weights);
        assert_eq!(b.policy(), policy);
        assert_eq!(b.len(), 5);
        for i in 0..10_000u64 {
            assert!(b.pick(&loads, Some(hash_key(&i.to_le_bytes()))) < 5);
            assert!(b.pick(&loads, None) < 5);
        }
    }
}

#[test]
fn zero_weights_count_as_one() {
    fastrand::seed(2);
    let loads = idle_loads(2);
    for policy in ALL {
        let b = Balancer::new(policy, &[0, 1]);
        let c = counts(&b, &loads, 20_000);
        assert!(c[0] > 8_000 && c[1] > 8_000, "{policy:?}: {c:?}");
    }
}

#[test]
#[should_panic(expected = "at least one endpoint")]
fn empty_endpoint_list_is_rejected() {
    let _ = Balancer::new(LbPolicy::RoundRobin, &[]);
}

#[test]
fn short_loads_slice_falls_back_instead_of_panicking() {
    fastrand::seed(3);
    for policy in [LbPolicy::LeastRequest, LbPolicy::PeakEwma] {
        let b = Balancer::new(policy, &[1, 1, 1]);
        for _ in 0..1_000 {
            assert!(b.pick(&[], None) < 3);
        }
    }
}

#[test]
fn debug_output_is_short() {
    let b = Balancer::new(LbPolicy::RingHash, &[1, 2, 3]);
    assert_eq!(
        format!("{b:?}"),
        "Balancer { policy: RingHash, endpoints: 3, .. }"
    );
}

// ---- RoundRobin -------------------------------------------------------------

#[test]
fn round_robin_weights_are_exact() {
    let b = Balancer::new(LbPolicy::RoundRobin, &[1, 2, 7]);
    let c = counts(&b, &idle_loads(3), 100_000);
    // Within 1% was asked for; a full-period schedule makes it exact.
    assert_eq!(c, [10_000, 20_000, 70_000]);
}

#[test]
fn round_robin_is_interleaved() {
    let b = Balancer::new(LbPolicy::RoundRobin, &[5, 1, 1]);
    let loads = idle_loads(3);
    let seq: Vec<usize> = (0..700).map(|_| b.pick(&loads, None)).collect();
    for pair in seq.windows(2) {
        assert!(
            pair[0] != pair[1] || pair[0] == 0,
            "light endpoint repeated: {pair:?}"
        );
    }
    for window in seq.windows(7) {
        let mut c = [0; 3];
        for &i in window {
            c[i] += 1;
        }
        assert_eq!(c, [5, 1, 1], "window {window:?}");
    }
}

#[test]
fn round_robin_equal_weights_cycle() {
    let b = Balancer::new(LbPolicy::RoundRobin, &[4, 4, 4]);
    let loads = idle_loads(3);
    let first = b.pick(&loads, None);
    for k in 1..30 {
        assert_eq!(b.pick(&loads, None), (first + k) % 3);
    }
}

#[test]
fn round_robin_is_exact_under_concurrency() {
    let b = Balancer::new(LbPolicy::RoundRobin, &[1, 2, 7]);
    let loads = idle_loads(3);
    let totals: Vec<Vec<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| counts(&b, &loads, 25_000)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sum: Vec<usize> = (0..3).map(|i| totals.iter().map(|t| t[i]).sum()).collect();
    // Every ticket from the shared counter is handed out exactly once.
    assert_eq!(sum, [10_000, 20_000, 70_000]);
}

// ---- Random -----------------------------------------------------------------

#[test]
fn random_follows_weights() {
    fastrand::seed(0x5eed);
    let b = Balancer::new(LbPolicy::Random, &[1, 3]);
    let n = 200_000;
    let c = counts(&b, &idle_loads(2), n);
    // σ of the share is ~0.001; 1 percentage point is ~10σ.
    assert!((share(c[0], n) - 0.25).abs() < 0.01, "{c:?}");
    assert!((share(c[1], n) - 0.75).abs() < 0.01, "{c:?}");
}

#[test]
fn random_equal_weights_is_uniform() {
    fastrand::seed(9);
    let b = Balancer::new(LbPolicy::Random, &[2, 2, 2, 2]);
    let n = 100_000;
    for c in counts(&b, &idle_loads(4), n) {
        assert!((share(c, n) - 0.25).abs() < 0.01, "{c}");
    }
}

// ---- LeastRequest -----------------------------------------------------------

/// Holds `n` requests open on `load` for as long as the returned guards live.
fn occupy(load: &Arc<EndpointLoad>, n: usize) -> Vec<InFlight> {
    (0..n).map(|_| load.start()).collect()
}

#[test]
fn least_request_avoids_the_busy_endpoint() {
    fastrand::seed(21);
    let b = Balancer::new(LbPolicy::LeastRequest, &[1, 1, 1, 1]);
    let loads = idle_loads(4);
    let _busy = occupy(&loads[0], 10);
    let n = 100_000;
    let c = counts(&b, &loads, n);
    assert!(share(c[0], n) < 0.10, "{c:?}");
    // Two distinct candidates: the busy one can only be drawn alongside an idle
    // rival, and the idle rival always wins.
    assert_eq!(c[0], 0);
}

#[test]
fn least_request_equal_load_is_uniform() {
    fastrand::seed(22);
    let b = Balancer::new(LbPolicy::LeastRequest, &[1, 1, 1, 1]);
    let loads = idle_loads(4);
    let _held: Vec<_> = loads.iter().map(|l| occupy(l, 3)).collect();
    let n = 100_000;
    for c in counts(&b, &loads, n) {
        assert!((share(c, n) - 0.25).abs() < 0.02, "{c}");
    }
}

#[test]
fn least_request_compares_load_per_weight() {
    fastrand::seed(23);
    let b = Balancer::new(LbPolicy::LeastRequest, &[1, 3]);
    let loads = idle_loads(2);
    // Idle: ties go to the weighted first draw, so the weights show through.
    let n = 100_000;
    let c = counts(&b, &loads, n);
    assert!((share(c[1], n) - 0.75).abs() < 0.01, "{c:?}");
    // 3 in flight on each: 3/1 vs 3/3, the heavier endpoint always wins.
    let _a = occupy(&loads[0], 3);
    let _b = occupy(&loads[1], 3);
    assert_eq!(counts(&b, &loads, 1_000), [0, 1_000]);
    // 10 on the heavy one: 3/1 = 3 < 10/3 ≈ 3.3, now the light endpoint wins.
    let _more = occupy(&loads[1], 7);
    assert_eq!(counts(&b, &loads, 1_000), [1_000, 0]);
}

#[test]
fn least_request_tracks_guards_dropping() {
    fastrand::seed(24);
    let b = Balancer::new(LbPolicy::LeastRequest, &[1, 1]);
    let loads = idle_loads(2);
    let busy = occupy(&loads[1], 5);
    assert_eq!(counts(&b, &loads, 1_000), [1_000, 0]);
    drop(busy);
    let c = counts(&b, &loads, 10_000);
    assert!(c[1] > 4_000, "{c:?}");
}

// ---- PeakEwma ---------------------------------------------------------------

#[test]
fn peak_ewma_sheds_the_slow_endpoint() {
    fastrand::seed(31);
    let b = Balancer::new(LbPolicy::PeakEwma, &[1, 1, 1, 1]);
    let loads = idle_loads(4);
    loads[0].observe_latency(Duration::from_millis(50));
    for l in &loads[1..] {
        l.observe_latency(Duration::from_millis(1));
    }
    let n = 100_000;
    let c = counts(&b, &loads, n);
    assert!(share(c[0], n) < 0.10, "{c:?}");
    for &fast in &c[1..] {
        assert!((share(fast, n) - 1.0 / 3.0).abs() < 0.02, "{c:?}");
    }
}

#[test]
fn peak_ewma_weighs_in_flight_against_latency() {
    fastrand::seed(32);
    let b = Balancer::new(LbPolicy::PeakEwma, &[1, 1]);
    let loads = idle_loads(2);
    loads[0].observe_latency(Duration::from_millis(50));
    loads[1].observe_latency(Duration::from_millis(1));
    assert_eq!(counts(&b, &loads, 1_000), [0, 1_000]);
    // 1 ms × (99 queued + 1) = 100 ms now costs more than 50 ms × 1.
    let _queue = occupy(&loads[1], 99);
    assert_eq!(counts(&b, &loads, 1_000), [1_000, 0]);
}

#[test]
fn peak_ewma_spike_diverts_traffic_at_once() {
    fastrand::seed(33);
    let b = Balancer::new(LbPolicy::PeakEwma, &[1, 1]);
    let loads = idle_loads(2);
    // One timestamp for both: idle estimates relax toward the default, so an
    // endpoint observed a microsecond earlier would otherwise always look cheaper.
    let t = Instant::now();
    for l in &loads {
        l.observe_latency_at(Duration::from_millis(2), t);
    }
    let before = counts(&b, &loads, 10_000);
    assert!(before[0] > 4_000 && before[1] > 4_000, "{before:?}");
    // One slow response is enough: no averaging delay on the way up.
    loads[0].observe_latency(Duration::from_millis(40));
    assert_eq!(counts(&b, &loads, 1_000), [0, 1_000]);
}

#[test]
fn peak_ewma_tries_new_endpoints() {
    fastrand::seed(34);
    // Endpoints already measured at 5 ms plus one that has never answered: the
    // default estimate (1 ms) makes the newcomer attractive.
    let b = Balancer::new(LbPolicy::PeakEwma, &[1, 1, 1]);
    let loads = idle_loads(3);
    loads[0].observe_latency(Duration::from_millis(5));
    loads[1].observe_latency(Duration::from_millis(5));
    let c = counts(&b, &loads, 10_000);
    assert!(c[2] > 6_000, "{c:?}");
}

#[test]
fn peak_ewma_divides_cost_by_weight() {
    fastrand::seed(35);
    // 2 ms at weight 4 (0.5 per weight) beats 1 ms at weight 1.
    let b = Balancer::new(LbPolicy::PeakEwma, &[1, 4]);
    let loads = idle_loads(2);
    loads[0].observe_latency(Duration::from_millis(1));
    loads[1].observe_latency(Duration::from_millis(2));
    assert_eq!(counts(&b, &loads, 1_000), [0, 1_000]);
}
