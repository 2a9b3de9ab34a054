//! Distribution tests for every policy through the public [`Balancer`] API. Random
//! policies seed the thread-local `fastrand` generator first (each test runs on its
//! own thread), so their counts are reproducible; the bounds are still several
//! standard deviations wide, so they hold for any seed, not just the chosen one.

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

// ---- RingHash ---------------------------------------------------------------

fn addresses(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.0.{}.{}:8080", i / 250, i % 250 + 1))
        .collect()
}

fn ring(weights: &[u32], ids: &[String]) -> Balancer {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    Balancer::new_with_ids(LbPolicy::RingHash, weights, &ids)
}

fn key(k: usize) -> u64 {
    hash_key(format!("session-{k}").as_bytes())
}

const KEYS: usize = 100_000;

#[test]
fn ring_hash_spreads_keys_evenly() {
    let ids = addresses(10);
    let b = ring(&[1; 10], &ids);
    let mut c = [0usize; 10];
    for k in 0..KEYS {
        c[b.pick(&[], Some(key(k)))] += 1;
    }
    for &n in &c {
        assert!((share(n, KEYS) - 0.1).abs() <= 0.03, "{c:?}");
    }
}

#[test]
fn ring_hash_is_deterministic_across_builds() {
    let ids = addresses(5);
    let a = ring(&[1; 5], &ids);
    let b = ring(&[1; 5], &ids);
    for k in 0..1_000 {
        assert_eq!(a.pick(&[], Some(key(k))), b.pick(&[], Some(key(k))));
    }
}

/// Which address each key maps to, for `ids` in the given order.
fn owners(b: &Balancer, ids: &[String]) -> Vec<String> {
    (0..KEYS)
        .map(|k| ids[b.pick(&[], Some(key(k)))].clone())
        .collect()
}

#[test]
fn ring_hash_removal_moves_only_the_removed_endpoints_keys() {
    let ids = addresses(10);
    let before = owners(&ring(&[1; 10], &ids), &ids);

    let removed = ids[3].clone();
    let survivors: Vec<String> = ids.iter().filter(|a| **a != removed).cloned().collect();
    let after = owners(&ring(&[1; 9], &survivors), &survivors);

    let mut moved_from_removed = 0;
    let mut moved_from_others = 0;
    for (old, new) in before.iter().zip(&after) {
        if *old == removed {
            assert_ne!(*new, removed);
            moved_from_removed += 1;
        } else if old != new {
            moved_from_others += 1;
        }
    }
    assert_eq!(moved_from_others, 0);
    let moved = share(moved_from_removed, KEYS);
    assert!((0.05..=0.15).contains(&moved), "moved {moved}");
}

#[test]
fn ring_hash_is_independent_of_endpoint_order() {
    let ids = addresses(6);
    let before = owners(&ring(&[1, 2, 3, 1, 2, 3], &ids), &ids);
    let mut reversed = ids.clone();
    reversed.reverse();
    let after = owners(&ring(&[3, 2, 1, 3, 2, 1], &reversed), &reversed);
    assert_eq!(before, after);
}

#[test]
fn ring_hash_removal_is_stable_with_uneven_weights() {
    // Removing the weight-1 endpoint changes the weights' gcd from 1 to 2; the ring
    // must not rescale the survivors' points because of it.
    let ids = addresses(4);
    let before = owners(&ring(&[2, 2, 2, 1], &ids), &ids);
    let after = owners(&ring(&[2, 2, 2], &ids[..3]), &ids[..3]);
    let moved_from_others = before
        .iter()
        .zip(&after)
        .filter(|(old, new)| **old != ids[3] && old != new)
        .count();
    assert_eq!(moved_from_others, 0);
}

#[test]
fn ring_hash_addition_moves_keys_only_to_the_new_endpoint() {
    let ids = addresses(9);
    let before = owners(&ring(&[1; 9], &ids), &ids);
    let ids10 = addresses(10);
    let after = owners(&ring(&[1; 10], &ids10), &ids10);
    let mut gained = 0;
    for (old, new) in before.iter().zip(&after) {
        if old != new {
            assert_eq!(*new, ids10[9]);
            gained += 1;
        }
    }
    assert!((0.05..=0.15).contains(&share(gained, KEYS)));
}

#[test]
fn ring_hash_respects_weights() {
    // With 160 points per unit of weight one 2:1 pair's ratio has σ ≈ 10% (the
    // heavy share of a 480-point ring has σ ≈ 2%), so a single ring proves little.
    // Averaged over 20 independent pairs σ ≈ 2.2%, and ±15% is a 7σ bound.
    let rings = 20;
    let mut ratio_sum = 0.0;
    for r in 0..rings {
        let ids = vec![format!("10.1.{r}.1:8080"), format!("10.1.{r}.2:8080")];
        let b = ring(&[2, 1], &ids);
        let mut c = [0usize; 2];
        for k in 0..20_000 {
            c[b.pick(&[], Some(key(k)))] += 1;
        }
        ratio_sum += c[0] as f64 / c[1] as f64;
    }
    let ratio = ratio_sum / f64::from(rings);
    assert!((1.7..=2.3).contains(&ratio), "mean ratio {ratio}");

    // One larger ring: 5 heavy + 5 light endpoints, heavy share σ ≈ 1%, so the
    // group ratio's σ ≈ 4.3% and ±15% is a 3.5σ bound.
    let ids = addresses(10);
    let weights = [2, 1, 2, 1, 2, 1, 2, 1, 2, 1];
    let b = ring(&weights, &ids);
    let (mut heavy, mut light) = (0usize, 0usize);
    for k in 0..KEYS {
        if weights[b.pick(&[], Some(key(k)))] == 2 {
            heavy += 1;
        } else {
            light += 1;
        }
    }
    let ratio = heavy as f64 / light as f64;
    assert!((1.7..=2.3).contains(&ratio), "{heavy}:{light}");
}

#[test]
fn ring_hash_duplicate_ids_still_share_traffic() {
    let ids = vec!["10.0.0.1:80".to_string(), "10.0.0.1:80".to_string()];
    let b = ring(&[1, 1], &ids);
    let mut c = [0usize; 2];
    for k in 0..KEYS {
        c[b.pick(&[], Some(key(k)))] += 1;
    }
    assert!(c[0] > KEYS / 4 && c[1] > KEYS / 4, "{c:?}");
}

#[test]
fn ring_hash_without_key_is_weighted_random() {
    fastrand::seed(41);
    let b = Balancer::new(LbPolicy::RingHash, &[1, 3]);
    let n = 100_000;
    let c = counts(&b, &idle_loads(2), n);
    assert!((share(c[0], n) - 0.25).abs() < 0.01, "{c:?}");
}

#[test]
fn ring_hash_new_uses_index_ids() {
    let by_index = Balancer::new(LbPolicy::RingHash, &[1, 1, 1]);
    let ids: Vec<String> = (0..3).map(|i| i.to_string()).collect();
    let explicit = ring(&[1, 1, 1], &ids);
    for k in 0..1_000 {
        assert_eq!(
            by_index.pick(&[], Some(key(k))),
            explicit.pick(&[], Some(key(k)))
        );
    }
}

#[test]
fn ring_hash_wraps_around() {
    let b = ring(&[1, 1], &addresses(2));
    // Past the last point the first point's owner takes over.
    assert_eq!(b.pick(&[], Some(u64::MAX)), b.pick(&[], Some(0)));
}

#[test]
fn hash_key_is_stable() {
    // Pinned values: placement must not change between builds or processes.
    assert_eq!(hash_key(b""), 0x2d06800538d394c2);
    assert_eq!(hash_key(b"user-42"), hash_key(b"user-42"));
    assert_ne!(hash_key(b"user-42"), hash_key(b"user-43"));
}
