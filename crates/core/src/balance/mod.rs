//! Load balancing: choosing which endpoint of an upstream cluster gets a request.
//!
//! A [`Balancer`] is built once per config for a fixed, weighted endpoint list and
//! is immutable afterwards. Live load is tracked separately, per endpoint, in an
//! [`EndpointLoad`], so it can be carried across a reload that keeps the address
//! while the balancer itself is simply rebuilt. A pick takes
//! no lock, allocates nothing, and touches at most one shared atomic counter
//! (round robin) or reads two endpoints' load atomics (P2C).
//!
//! Policies ([`LbPolicy`]):
//!
//! - **`RoundRobin`**: smooth weighted round robin (nginx). Weights 5,1,1 give
//!   `a a b a c a a`: exact shares over every period, with the heavy endpoint's
//!   turns spread between the light ones rather than in a burst. The period is
//!   precomputed; a pick is one `fetch_add`.
//! - **`Random`**: independent weighted random picks. No shared state at all, so it
//!   scales perfectly across cores, at the price of only statistical fairness.
//! - **`LeastRequest`**: power of two choices. Draw two distinct endpoints (weighted)
//!   and take the one with fewer in-flight requests per unit of weight. Nearly as
//!   good as scanning for the global minimum, without the scan, and without the herd
//!   behaviour of every gateway thread choosing the same "least loaded" endpoint.
//! - **`PeakEwma`**: power of two choices by latency estimate × (in-flight + 1) per
//!   unit of weight. The estimate jumps up on a slow response and decays down
//!   gradually, so a degrading endpoint is shed at once and re-admitted slowly;
//!   without fresh samples it relaxes toward a low default, so an endpoint that
//!   stopped being picked after a spike is eventually probed again.
//! - **`RingHash`**: consistent hashing on a ring of virtual nodes placed by endpoint
//!   address, so a request key keeps hitting the same endpoint and removing one of N
//!   endpoints remaps only its own ~1/N of the keys. Requests without a key are
//!   balanced by weighted random.
//!
//! With a single endpoint every policy returns 0 without touching any state.

mod load;
mod random;
mod ring_hash;
mod round_robin;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

pub use load::{DEFAULT_LATENCY, DEFAULT_TAU, EndpointLoad, InFlight};

use random::{P2c, WeightedSampler};
use ring_hash::Ring;
use round_robin::RoundRobin;

pub use meshgate_config::LbPolicy;

/// Chooses an endpoint index for each request. `Send + Sync`; share it by `Arc`.
pub struct Balancer {
    policy: LbPolicy,
    len: usize,
    strategy: Strategy,
}

enum Strategy {
    /// One endpoint: nothing to decide.
    Single,
    RoundRobin(RoundRobin),
    Random(WeightedSampler),
    LeastRequest(P2c),
    PeakEwma(P2c),
    RingHash {
        ring: Ring,
        fallback: WeightedSampler,
    },
}

impl Balancer {
    /// A balancer for endpoints with these weights, endpoint i identified by its
    /// index (for `RingHash` prefer [`Balancer::new_with_ids`], which keeps keys in
    /// place when the list changes).
    ///
    /// A weight of 0 is treated as 1 (configuration validation rejects it; this
    /// keeps a slip from turning into a panic or a division by zero).
    ///
    /// # Panics
    ///
    /// If `weights` is empty.
    pub fn new(policy: LbPolicy, weights: &[u32]) -> Self {
        if policy == LbPolicy::RingHash && weights.len() > 1 {
            let ids: Vec<String> = (0..weights.len()).map(|i| i.to_string()).collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            Self::new_with_ids(policy, weights, &ids)
        } else {
            Self::new_with_ids(policy, weights, &[])
        }
    }

    /// Like [`Balancer::new`], with `ids[i]` the stable identity (address) of
    /// endpoint i. `RingHash` places each endpoint's virtual nodes by its id, so an
    /// endpoint keeps its keys when others are added or removed; other policies
    /// ignore `ids`, which may then be empty.
    ///
    /// # Panics
    ///
    /// If `weights` is empty, or the policy is `RingHash` with more than one
    /// endpoint and `ids.len() != weights.len()`.
    pub fn new_with_ids(policy: LbPolicy, weights: &[u32], ids: &[&str]) -> Self {
        assert!(
            !weights.is_empty(),
            "a balancer needs at least one endpoint"
        );
        let len = weights.len();
        let strategy = if len == 1 {
            Strategy::Single
        } else {
            let weights: Box<[u32]> = weights.iter().map(|&w| w.max(1)).collect();
            match policy {
                LbPolicy::RoundRobin => Strategy::RoundRobin(RoundRobin::new(&weights)),
                LbPolicy::Random => Strategy::Random(WeightedSampler::new(&weights)),
                LbPolicy::LeastRequest => Strategy::LeastRequest(P2c::new(&weights)),
                LbPolicy::PeakEwma => Strategy::PeakEwma(P2c::new(&weights)),
                LbPolicy::RingHash => {
                    assert_eq!(ids.len(), len, "RingHash needs one id per endpoint");
                    Strategy::RingHash {
                        ring: Ring::new(&weights, ids),
                        fallback: WeightedSampler::new(&weights),
                    }
                }
            }
        };
        Self {
            policy,
            len,
            strategy,
        }
    }

    /// The policy this balancer was built for.
    pub fn policy(&self) -> LbPolicy {
        self.policy
    }

    /// Number of endpoints; every pick is below this.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a balancer has at least one endpoint.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Picks the endpoint for one request.
    ///
    /// `loads[i]` is endpoint i's live load (same order and length as the weights);
    /// only `LeastRequest` and `PeakEwma` read it. `hash` is the request's key for
    /// `RingHash`; `None` there means a weighted random pick. Ring points are spread
    /// uniformly over all of `u64`, so the key must be too: pass [`hash_key`] of the
    /// attribute, never a raw small number (those would all land on the first point).
    /// Other policies ignore `hash`.
    ///
    /// Never panics: if `loads` is shorter than the endpoint list (a caller bug),
    /// the load-aware policies fall back to a weighted random pick rather than
    /// index out of bounds (release builds abort on panic).
    pub fn pick(&self, loads: &[Arc<EndpointLoad>], hash: Option<u64>) -> usize {
        match &self.strategy {
            Strategy::Single => 0,
            Strategy::RoundRobin(rr) => rr.pick(),
            Strategy::Random(sampler) => sampler.sample(),
            Strategy::LeastRequest(p2c) => p2c.least_request(loads),
            Strategy::PeakEwma(p2c) => p2c.peak_ewma(loads, Instant::now()),
            Strategy::RingHash { ring, fallback } => match hash {
                Some(h) => ring.pick(h),
                None => fallback.sample(),
            },
        }
    }
}

impl fmt::Debug for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The schedule or ring can be hundreds of thousands of entries; not useful
        // in a log line.
        f.debug_struct("Balancer")
            .field("policy", &self.policy)
            .field("endpoints", &self.len)
            .finish_non_exhaustive()
    }
}

/// The `RingHash` key for a request attribute (header value, cookie, client IP).
/// xxh3-64 with the default secret: the same bytes give the same key in every
/// process and on every platform, so a fleet of gateways agrees on placement.
pub fn hash_key(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}
