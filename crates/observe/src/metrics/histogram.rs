//! A lock-free latency histogram: fixed buckets of atomic counters. The
//! prometheus-client `Histogram` takes a mutex per observation; this one is a
//! bucket search and three relaxed atomic adds, so it can sit on the request path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds in seconds: 0.25 ms doubling to ~8 s, then +Inf.
const BOUNDS: [f64; 16] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
    2.048, 4.096, 8.192,
];

#[derive(Debug, Default)]
struct Inner {
    /// One per bound, plus +Inf.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    count: AtomicU64,
    /// Sum in nanoseconds: integer adds stay exact and lock-free.
    sum_nanos: AtomicU64,
}

/// Cheap to clone; clones share the same counters.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(Arc<Inner>);

impl LatencyHistogram {
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let bucket = BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BOUNDS.len());
        self.0.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
        self.0
            .sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    /// The `q` quantile (0 to 1) in seconds, interpolated linearly inside its
    /// bucket (the +Inf bucket reports the last bound); `None` before any
    /// observation.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = (self.0.buckets.iter())
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0u64;
        for (i, n) in counts.iter().enumerate() {
            if *n > 0 && (seen + n) as f64 >= rank {
                let Some(upper) = BOUNDS.get(i) else {
                    return BOUNDS.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { BOUNDS[i - 1] };
                let within = (rank - seen as f64) / *n as f64;
                return Some(lower + (upper - lower) * within.clamp(0.0, 1.0));
            }
            seen += n;
        }
        BOUNDS.last().copied()
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0u64); BOUNDS.len() + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            let bound = BOUNDS.get(i).copied().unwrap_or(f64::INFINITY);
            *slot = (bound, self.0.buckets[i].load(Ordering::Relaxed));
        }
        // Count from the buckets so a scrape racing an observation stays consistent.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn observations_land_in_their_buckets() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.count(), 3);
        assert_eq!(h.0.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(h.0.buckets[4].load(Ordering::Relaxed), 1, "3 ms <= 4 ms");
        assert_eq!(h.0.buckets[BOUNDS.len()].load(Ordering::Relaxed), 1, "+Inf");
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register("lat", "test", h.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(text.contains("lat_bucket{le=\"0.004\"} 2"), "{text}");
        assert!(text.contains("lat_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("lat_count 3"));
    }
}
