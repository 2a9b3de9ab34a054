//! Ring hash distribution, stickiness and minimal disruption when endpoints change.

use super::*;

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
