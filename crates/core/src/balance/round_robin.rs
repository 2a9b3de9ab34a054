//! Smooth weighted round robin (nginx's algorithm), flattened at build time into a
//! schedule so a pick is one atomic increment and one array read.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Upper bound on the schedule length (before the one-slot-per-endpoint floor).
/// Weights are reduced by their gcd first, so this only bites for large, coprime
/// weights; it keeps the schedule at most 256 KiB of `u32`s.
pub const MAX_SCHEDULE: u64 = 65_536;

/// A shared counter on its own cache line: every pick on every core increments
/// it, and it should not drag neighbouring read-mostly data along.
#[repr(align(64))]
#[derive(Debug)]
struct Counter(AtomicUsize);

#[derive(Debug)]
pub(crate) struct RoundRobin {
    /// Empty when all weights are equal: plain `counter % len` is then the same
    /// order and needs no memory.
    schedule: Box<[u32]>,
    len: usize,
    next: Counter,
}

impl RoundRobin {
    pub(crate) fn new(weights: &[u32]) -> Self {
        let len = weights.len();
        let uniform = weights.iter().all(|&w| w == weights[0]);
        let schedule = if uniform {
            Box::default()
        } else {
            build_schedule(weights).into_boxed_slice()
        };
        // Start at a random position so that gateways (or routes) built at the same
        // moment, e.g. by one config push, do not all send their first requests to
        // the same endpoint.
        let period = if uniform { len } else { schedule.len() };
        let start = fastrand::usize(..period.max(1));
        Self {
            schedule,
            len,
            next: Counter(AtomicUsize::new(start)),
        }
    }

    pub(crate) fn pick(&self) -> usize {
        // Relaxed: the counter only needs to hand out distinct tickets; wrapping at
        // usize::MAX merely skips a few slots once per 2^64 picks.
        let ticket = self.next.0.fetch_add(1, Relaxed);
        if self.schedule.is_empty() {
            ticket % self.len
        } else {
            self.schedule[ticket % self.schedule.len()] as usize
        }
    }
}

/// The full period of nginx's smooth weighted round robin for `weights`.
///
/// Each step every endpoint's `current` grows by its weight, the largest (first on
/// ties) is chosen and pays back the total. The result spreads the heavy endpoint's
/// turns between the light ones (5,1,1 → a a b a c a a) instead of bursting them,
/// and after `sum(weights)` steps every `current` is back at zero, so one period is
/// the whole schedule.
///
/// Cost is O(period × endpoints), paid once per config build, never per pick.
pub(crate) fn build_schedule(weights: &[u32]) -> Vec<u32> {
    let weights = reduce_weights(weights, MAX_SCHEDULE);
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        let mut best_value = i64::MIN;
        for (i, (c, &w)) in current.iter_mut().zip(&weights).enumerate() {
            *c += i64::from(w);
            // Strictly greater: ties go to the lower index, as in nginx.
            if *c > best_value {
                best = i;
                best_value = *c;
            }
        }
        current[best] -= total;
        schedule.push(best as u32);
    }
    schedule
}

/// Weights made as small as possible without changing their ratios (divide by the
/// gcd), then, if the sum still exceeds `cap`, scaled down proportionally with a
/// floor of 1 so no endpoint disappears. Zero weights count as 1.
pub(crate) fn reduce_weights(weights: &[u32], cap: u64) -> Vec<u32> {
    let weights: Vec<u32> = weights.iter().map(|&w| w.max(1)).collect();
    let g = weights.iter().fold(0, |g, &w| gcd(g, w)).max(1);
    let mut reduced: Vec<u32> = weights.iter().map(|&w| w / g).collect();
    let sum: u64 = reduced.iter().map(|&w| u64::from(w)).sum();
    if sum > cap {
        for w in &mut reduced {
            // w ≤ u32::MAX and cap ≤ 2^32 keep the product within u64.
            *w = (u64::from(*w) * cap / sum).max(1) as u32;
        }
        let g = reduced.iter().fold(0, |g, &w| gcd(g, w)).max(1);
        for w in &mut reduced {
            *w /= g;
        }
    }
    reduced
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_order_for_5_1_1() {
        // The sequence from nginx's commit introducing smooth weighting.
        assert_eq!(build_schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn schedule_has_exact_counts_and_spreads_turns() {
        let s = build_schedule(&[1, 2, 7]);
        assert_eq!(s.len(), 10);
        let count = |i| s.iter().filter(|&&x| x == i).count();
        assert_eq!((count(0), count(1), count(2)), (1, 2, 7));
        // The heavy endpoint never runs more than three in a row out of 7/10.
        let longest_run = s.chunk_by(|a, b| a == b).map(<[u32]>::len).max().unwrap();
        assert!(longest_run <= 3, "{s:?}");
    }

    #[test]
    fn weights_are_reduced_by_gcd() {
        assert_eq!(reduce_weights(&[10, 20, 70], MAX_SCHEDULE), [1, 2, 7]);
        // 3,1: a a b a (ties go to the lower index).
        assert_eq!(build_schedule(&[300, 100]), [0, 0, 1, 0]);
        assert_eq!(reduce_weights(&[0, 2], MAX_SCHEDULE), [1, 2]);
    }

    #[test]
    fn large_coprime_weights_are_scaled_to_the_cap() {
        let weights = [1_000_003, 2_000_000, 7, u32::MAX];
        let reduced = reduce_weights(&weights, MAX_SCHEDULE);
        let sum: u64 = reduced.iter().map(|&w| u64::from(w)).sum();
        assert!(sum <= MAX_SCHEDULE + weights.len() as u64, "{reduced:?}");
        // No endpoint vanishes, and the ratios survive to within rounding.
        assert!(reduced.iter().all(|&w| w >= 1));
        let ratio = f64::from(reduced[1]) / f64::from(reduced[0]);
        assert!((ratio - 2.0).abs() < 0.01, "{reduced:?}");
        let s = build_schedule(&weights);
        assert_eq!(s.len() as u64, sum);
    }

    #[test]
    fn uniform_weights_skip_the_schedule() {
        let rr = RoundRobin::new(&[3, 3, 3]);
        assert!(rr.schedule.is_empty());
        let first = rr.pick();
        assert_eq!(
            (rr.pick(), rr.pick(), rr.pick()),
            ((first + 1) % 3, (first + 2) % 3, first)
        );
    }

    #[test]
    fn counter_wraparound_stays_in_bounds() {
        let rr = RoundRobin::new(&[1, 2, 7]);
        rr.next.0.store(usize::MAX - 5, Relaxed);
        for _ in 0..20 {
            assert!(rr.pick() < 3);
        }
    }
}
