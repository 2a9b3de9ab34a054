//! Consistent hashing on a ketama-style ring of virtual nodes, keyed by stable
//! endpoint identities so that adding or removing one endpoint only moves the keys
//! that land on its own points.

use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Virtual nodes per unit of weight. ketama's 160 keeps the standard deviation of
/// an endpoint's share near 8% of its expected value (1/√160) with a small ring.
pub const VNODES_PER_WEIGHT: u64 = 160;

/// Upper bound on ring points (3 MiB of hashes and owners). Rings that would be
/// larger are scaled down proportionally, keeping at least one point per endpoint.
pub const MAX_RING_POINTS: u64 = 1 << 18;

#[derive(Debug)]
pub(crate) struct Ring {
    /// Sorted point positions. Kept apart from `owners` so the binary search
    /// walks a dense array of `u64`s.
    points: Box<[u64]>,
    /// `owners[i]` is the endpoint index owning `points[i]`.
    owners: Box<[u32]>,
}

impl Ring {
    /// `ids[i]` is endpoint i's stable identity (its address). A point's position
    /// depends only on its endpoint's id and replica number, never on the index, so
    /// the other endpoints' points stay where they were when the list changes.
    pub(crate) fn new(weights: &[u32], ids: &[&str]) -> Self {
        debug_assert_eq!(weights.len(), ids.len());
        let per_endpoint = vnode_counts(weights);

        // An id listed twice would otherwise get identical points, and the lower
        // index would win every one of them; the k-th repeat gets its own points
        // instead (the first occurrence keeps the plain id's points).
        let mut seen: HashMap<&str, u64> = HashMap::with_capacity(ids.len());
        let mut ring: Vec<(u64, u32)> =
            Vec::with_capacity(per_endpoint.iter().sum::<u64>() as usize);
        for (index, (&id, &vnodes)) in ids.iter().zip(&per_endpoint).enumerate() {
            let repeat = seen.entry(id).or_insert(0);
            let seed_base = *repeat << 32;
            *repeat += 1;
            for replica in 0..vnodes {
                ring.push((
                    xxh3_64_with_seed(id.as_bytes(), seed_base | replica),
                    index as u32,
                ));
            }
        }
        // Equal positions (vanishingly rare) are ordered by id, not index, so that
        // ownership does not depend on where an endpoint sits in the list.
        ring.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| ids[a.1 as usize].cmp(ids[b.1 as usize]))
                .then_with(|| a.1.cmp(&b.1))
        });
        let (points, owners) = ring.into_iter().unzip::<_, _, Vec<_>, Vec<_>>();
        Self {
            points: points.into_boxed_slice(),
            owners: owners.into_boxed_slice(),
        }
    }

    /// The owner of the first point at or after `hash`, wrapping past the end.
    pub(crate) fn pick(&self, hash: u64) -> usize {
        let i = self.points.partition_point(|&p| p < hash);
        let i = if i == self.points.len() { 0 } else { i };
        self.owners[i] as usize
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }
}

/// Points per endpoint: `VNODES_PER_WEIGHT × weight`.
///
/// Deliberately not reduced by the weights' gcd (unlike the round-robin schedule):
/// the gcd depends on the whole endpoint set, so removing one endpoint could change
/// every survivor's point count and shuffle keys between survivors. Only rings that
/// would exceed `MAX_RING_POINTS` are scaled (which does depend on the set; at that
/// size memory wins over perfect stability).
fn vnode_counts(weights: &[u32]) -> Vec<u64> {
    let wanted: Vec<u64> = weights
        .iter()
        .map(|&w| u64::from(w.max(1)) * VNODES_PER_WEIGHT)
        .collect();
    let total: u64 = wanted.iter().sum();
    if total <= MAX_RING_POINTS {
        return wanted;
    }
    wanted
        .iter()
        // v ≤ 2^32 × 160 and MAX_RING_POINTS = 2^18: the product fits u128 easily.
        .map(|&v| ((u128::from(v) * u128::from(MAX_RING_POINTS) / u128::from(total)) as u64).max(1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_scale_with_weight() {
        assert_eq!(vnode_counts(&[1, 2, 0]), [160, 320, 160]);
        let ring = Ring::new(&[1, 2], &["a", "b"]);
        assert_eq!(ring.len(), 480);
        let owned_by_b = ring.owners.iter().filter(|&&o| o == 1).count();
        assert_eq!(owned_by_b, 320);
        assert!(ring.points.is_sorted());
    }

    #[test]
    fn oversized_rings_are_capped() {
        let counts = vnode_counts(&[u32::MAX, u32::MAX / 2, 1]);
        let total: u64 = counts.iter().sum();
        assert!(total <= MAX_RING_POINTS + 3, "{counts:?}");
        assert_eq!(counts[2], 1);
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((ratio - 2.0).abs() < 0.01);
    }

    #[test]
    fn lookup_takes_first_point_at_or_after_hash() {
        let ring = Ring {
            points: Box::new([10, 20, 30]),
            owners: Box::new([0, 1, 2]),
        };
        assert_eq!(ring.pick(0), 0);
        assert_eq!(ring.pick(10), 0);
        assert_eq!(ring.pick(11), 1);
        assert_eq!(ring.pick(30), 2);
        assert_eq!(ring.pick(31), 0);
        assert_eq!(ring.pick(u64::MAX), 0);
    }
}
