//! Verified tokens, remembered by the SHA-256 of the token (a collision-resistant
//! key: a forged token cannot land on another's entry) so the signature is checked
//! once per token rather than once per request. Bounded; entries leave at their
//! `exp`, when the cache is full, or all at once when the JWKS changes. Sharded
//! read-mostly locks keep concurrent hits from contending.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::claims::Verified;

const SHARDS: usize = 16;

pub(super) type Digest = [u8; 32];

type Shard = RwLock<HashMap<Digest, Arc<Verified>>>;

#[derive(Debug)]
pub(super) struct TokenCache {
    shards: Box<[Shard]>,
    per_shard: usize,
}

/// The cache key of a token.
pub(super) fn digest(token: &str) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl TokenCache {
    /// A cache of about `size` entries; `None` when `size` is 0 (no caching).
    pub fn new(size: u32) -> Option<Self> {
        (size > 0).then(|| TokenCache {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            per_shard: (size as usize).div_ceil(SHARDS),
        })
    }

    fn shard(&self, key: &Digest) -> &Shard {
        &self.shards[key[0] as usize % SHARDS]
    }

    pub fn get(&self, key: &Digest) -> Option<Arc<Verified>> {
        // A poisoned lock only means another request panicked mid-insert; the map
        // itself is still a valid map, so keep using it.
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        shard.get(key).cloned()
    }

    /// Remembers `v`; when the shard is full, expired entries go first, then an
    /// arbitrary one.
    pub fn insert(&self, key: Digest, v: Arc<Verified>, now: u64, skew: u64) {
        let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| e.exp.saturating_add(skew) >= now);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(key, v);
    }

    pub fn remove(&self, key: &Digest) {
        let mut shard = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
        shard.remove(key);
    }

    pub fn clear(&self) {
        for s in self.shards.iter() {
            s.write().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_core::filter::Consumer;

    fn entry(exp: u64) -> Arc<Verified> {
        Arc::new(Verified {
            consumer: Arc::new(Consumer::default()),
            name_value: None,
            groups_value: None,
            claim_headers: Vec::new(),
            exp,
            nbf: None,
        })
    }

    #[test]
    fn bounded_and_expired_entries_go_first() {
        let cache = TokenCache::new(32).unwrap();
        for i in 0..1000u32 {
            let key = digest(&format!("token-{i}"));
            cache.insert(key, entry(if i % 2 == 0 { 10 } else { 1000 }), 100, 0);
        }
        assert!(cache.len() <= 32, "{} entries", cache.len());
        let fresh = digest("fresh");
        cache.insert(fresh, entry(1000), 100, 0);
        assert!(cache.get(&fresh).is_some());
        cache.remove(&fresh);
        assert!(cache.get(&fresh).is_none());
        cache.clear();
        assert_eq!(cache.len(), 0);
        assert!(TokenCache::new(0).is_none());
    }
}
