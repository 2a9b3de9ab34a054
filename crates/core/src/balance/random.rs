//! Weighted random sampling and the power-of-two-choices (P2C) draw built on it:
//! the `Random` policy, the candidate draw of `LeastRequest` and `PeakEwma`, and the
//! fallback for `RingHash` requests without a hash key.

use std::sync::Arc;
use std::time::Instant;

use super::EndpointLoad;

/// Samples endpoint indices in proportion to their weights, using the thread-local
/// `fastrand` generator (no shared state, so no contention between cores).
#[derive(Debug)]
pub(crate) struct WeightedSampler {
    /// `prefix[i] = weights[0] + … + weights[i]`. Empty when all weights are equal,
    /// which turns every draw into one bounded integer.
    prefix: Box<[u64]>,
    len: usize,
}

impl WeightedSampler {
    /// `weights` must be non-empty; zero weights count as 1.
    pub(crate) fn new(weights: &[u32]) -> Self {
        let uniform = weights.iter().all(|&w| w.max(1) == weights[0].max(1));
        let prefix = if uniform {
            Box::default()
        } else {
            weights
                .iter()
                .scan(0u64, |sum, &w| {
                    *sum += u64::from(w.max(1));
                    Some(*sum)
                })
                .collect()
        };
        Self {
            prefix,
            len: weights.len(),
        }
    }

    /// One index, `P(i) = w_i / Σw`.
    pub(crate) fn sample(&self) -> usize {
        match self.prefix.last() {
            None => fastrand::usize(..self.len),
            Some(&total) => self.index_of(fastrand::u64(..total)),
        }
    }

    /// Two distinct indices: the first as [`WeightedSampler::sample`], the second
    /// drawn from the remaining weight (sampling without replacement). The second
    /// draw skips the first index's slice of the range instead of retrying, so it
    /// costs exactly one random number even when one weight dominates. Needs at
    /// least two endpoints.
    pub(crate) fn sample_two(&self) -> (usize, usize) {
        debug_assert!(self.len >= 2);
        match self.prefix.last() {
            None => {
                let a = fastrand::usize(..self.len);
                let b = fastrand::usize(..self.len - 1);
                (a, if b >= a { b + 1 } else { b })
            }
            Some(&total) => {
                let a = self.index_of(fastrand::u64(..total));
                let a_start = if a == 0 { 0 } else { self.prefix[a - 1] };
                let a_weight = self.prefix[a] - a_start;
                let r = fastrand::u64(..total - a_weight);
                let r = if r >= a_start { r + a_weight } else { r };
                (a, self.index_of(r))
            }
        }
    }

    /// The endpoint whose slice `[prefix[i-1], prefix[i])` contains `r`.
    fn index_of(&self, r: u64) -> usize {
        self.prefix.partition_point(|&p| p <= r)
    }
}

/// Power of two choices: draw two distinct candidates by weight, keep the one with
/// the lower load per unit of weight. Comparing two random endpoints instead of
/// scanning all of them costs O(1) and avoids every thread herding onto the same
/// momentarily least-loaded endpoint, while still steering clearly away from
/// overloaded ones (an endpoint only wins when it beats its rival).
#[derive(Debug)]
pub(crate) struct P2c {
    sampler: WeightedSampler,
    /// Zero weights already replaced by 1, so dividing by them is safe.
    weights: Box<[u32]>,
}

impl P2c {
    /// At least two endpoints; zero weights count as 1.
    pub(crate) fn new(weights: &[u32]) -> Self {
        Self {
            sampler: WeightedSampler::new(weights),
            weights: weights.iter().map(|&w| w.max(1)).collect(),
        }
    }

    /// Fewer in-flight requests per unit of weight wins; ties go to the first draw,
    /// which is itself random, so ties do not favour low indices.
    pub(crate) fn least_request(&self, loads: &[Arc<EndpointLoad>]) -> usize {
        if loads.len() < self.weights.len() {
            return self.sampler.sample();
        }
        let (a, b) = self.sampler.sample_two();
        // in_flight_b / w_b < in_flight_a / w_a, cross-multiplied to stay in exact
        // integers (u32 × u32 fits u64).
        let scaled = |i: usize, other: usize| {
            u64::from(loads[i].in_flight()) * u64::from(self.weights[other])
        };
        if scaled(b, a) < scaled(a, b) { b } else { a }
    }

    /// Lower peak-EWMA cost per unit of weight wins; ties (e.g. two idle, never
    /// observed endpoints) go to the first draw. `now` is read once per pick by the
    /// caller so both candidates are judged at the same instant.
    pub(crate) fn peak_ewma(&self, loads: &[Arc<EndpointLoad>], now: Instant) -> usize {
        if loads.len() < self.weights.len() {
            return self.sampler.sample();
        }
        let (a, b) = self.sampler.sample_two();
        let cost = |i: usize| loads[i].ewma_cost_at(now) / f64::from(self.weights[i]);
        if cost(b) < cost(a) { b } else { a }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_sample_matches_weights() {
        fastrand::seed(7);
        let s = WeightedSampler::new(&[1, 3]);
        let n = 200_000;
        let mut counts = [0u32; 2];
        for _ in 0..n {
            counts[s.sample()] += 1;
        }
        let share0 = f64::from(counts[0]) / f64::from(n);
        assert!((share0 - 0.25).abs() < 0.01, "share {share0}");
    }

    #[test]
    fn index_of_respects_slice_bounds() {
        let s = WeightedSampler::new(&[2, 1, 3]);
        let owners: Vec<usize> = (0..6).map(|r| s.index_of(r)).collect();
        assert_eq!(owners, [0, 0, 1, 2, 2, 2]);
    }

    #[test]
    fn sample_two_is_distinct_and_weighted_without_replacement() {
        fastrand::seed(11);
        // With weights 1,1,8 the exact pair probabilities are known:
        // P(first = 2) = 0.8, and given first = 2 the second is 0 or 1 evenly;
        // P(first = 0) = 0.1, then second = 2 with 8/9.
        let s = WeightedSampler::new(&[1, 1, 8]);
        let n = 200_000;
        let mut firsts = [0u32; 3];
        let mut pairs = [[0u32; 3]; 3];
        for _ in 0..n {
            let (a, b) = s.sample_two();
            assert_ne!(a, b);
            firsts[a] += 1;
            pairs[a][b] += 1;
        }
        let share = |c: u32| f64::from(c) / f64::from(n);
        assert!((share(firsts[2]) - 0.8).abs() < 0.01);
        let given0 = f64::from(pairs[0][2]) / f64::from(firsts[0]);
        assert!((given0 - 8.0 / 9.0).abs() < 0.02, "{given0}");
        let given2 = f64::from(pairs[2][0]) / f64::from(firsts[2]);
        assert!((given2 - 0.5).abs() < 0.01, "{given2}");
    }

    #[test]
    fn sample_two_uniform_covers_all_ordered_pairs() {
        fastrand::seed(3);
        let s = WeightedSampler::new(&[4, 4, 4, 4]);
        let mut pairs = [[0u32; 4]; 4];
        for _ in 0..120_000 {
            let (a, b) = s.sample_two();
            assert_ne!(a, b);
            pairs[a][b] += 1;
        }
        // 12 ordered pairs, 10,000 expected each.
        for (a, row) in pairs.iter().enumerate() {
            for (b, &c) in row.iter().enumerate() {
                if a != b {
                    assert!((9_000..11_000).contains(&c), "pair {a},{b}: {c}");
                }
            }
        }
    }

    #[test]
    fn sample_two_with_two_endpoints_returns_both() {
        fastrand::seed(5);
        for s in [WeightedSampler::new(&[1, 1]), WeightedSampler::new(&[1, 9])] {
            for _ in 0..1_000 {
                let (a, b) = s.sample_two();
                assert_eq!(a + b, 1);
            }
        }
    }
}
