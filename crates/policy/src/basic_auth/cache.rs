//! Remembered successful password checks, so a client sending the same Basic
//! credentials on every request pays the slow hash once per TTL. Keyed by the
//! SHA-256 of the decoded `user:password` (the password itself is never kept);
//! bounded in size. Lives in the compiled policy: a config change that touches the
//! consumers or the policy compiles a new one with an empty cache, so a revoked or
//! changed password is never accepted from the cache.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::api_key::KnownConsumer;

/// Most entries kept; past it, expired entries go first, then the oldest one.
pub const CAPACITY: usize = 10_000;

#[derive(Debug)]
pub struct Verified {
    ttl: Duration,
    capacity: usize,
    entries: RwLock<HashMap<[u8; 32], Entry>>,
}

#[derive(Debug)]
struct Entry {
    consumer: Arc<KnownConsumer>,
    expires: Instant,
}

impl Verified {
    /// A cache keeping entries for `ttl` (zero: keeps nothing).
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Verified {
            ttl,
            capacity,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The consumer these credentials were verified for, if not expired.
    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<KnownConsumer>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let e = entries.get(key)?;
        (e.expires > Instant::now()).then(|| e.consumer.clone())
    }

    /// Remembers a successful check.
    pub fn insert(&self, key: [u8; 32], consumer: Arc<KnownConsumer>) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.capacity
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| *k)
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key,
            Entry {
                consumer,
                expires: now + self.ttl,
            },
        );
    }

    /// Entries held now, expired ones included until they are pushed out.
    pub fn entries(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_config as config;

    fn consumer(name: &str) -> Arc<KnownConsumer> {
        Arc::new(
            KnownConsumer::new(&config::Consumer {
                name: name.into(),
                groups: vec![],
                api_keys: vec![],
                basic_auth: None,
            })
            .unwrap(),
        )
    }

    #[test]
    fn bounded_and_expiring() {
        let c = Verified::new(Duration::from_secs(60), 2);
        c.insert([1; 32], consumer("a"));
        c.insert([2; 32], consumer("b"));
        c.insert([3; 32], consumer("c"));
        assert_eq!(c.entries(), 2, "capacity holds");
        assert!(c.get(&[1; 32]).is_none(), "the oldest went first");
        assert_eq!(&*c.get(&[3; 32]).unwrap().consumer.name, "c");

        let off = Verified::new(Duration::ZERO, 10);
        off.insert([1; 32], consumer("a"));
        assert!(off.get(&[1; 32]).is_none() && off.entries() == 0);

        let short = Verified::new(Duration::from_millis(1), 10);
        short.insert([1; 32], consumer("a"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            short.get(&[1; 32]).is_none(),
            "expired entries are not used"
        );
    }
}
