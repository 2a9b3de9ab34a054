//! The global rate limit, shared by every gateway instance through Redis.
//!
//! Redis holds one GCRA bucket per key (the same arithmetic as the local limit,
//! on Redis's clock, so instances' clocks do not matter), updated by one atomic
//! Lua script. Asking Redis for every request would add a round trip to each, so
//! instances **lease** tokens: the script grants up to a batch at once, the
//! instance spends them locally (`try_local`, synchronous), and asks again when
//! they run out. When Redis says the bucket is empty, the instance remembers
//! "limited until T" and refuses locally until T. Leases expire after the time the
//! bucket needs to refill them, so tokens are spent close to when Redis counted
//! them; a lease starts at one token and doubles while leases are used up, so a
//! quiet key wastes nothing. Whatever the instances do, Redis never grants more
//! than the bucket holds: over any window the instances together admit at most
//! what a single bucket would, plus at most one unspent lease each carried over.
//!
//! Only one fetch per key runs at a time in an instance; the requests behind it
//! wait and then spend the tokens it brought. Every wait for Redis is bounded by
//! `timeout`. After a failure, Redis is left alone for `PAUSE_AFTER_FAILURE`
//! (requests that need it get the failure mode at once), then tried again; the
//! connection manager reconnects on its own. The connection is opened lazily on
//! first use, so a gateway starts even while Redis is down.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use meshgate_config as config;

use super::Decision;
use super::key::Key;

/// Grants up to ARGV[3] tokens from the GCRA bucket at KEYS[1]: one token per
/// ARGV[1] µs, ARGV[2] µs of capacity (burst × interval). The stored value is the
/// bucket's theoretical arrival time (TAT) in µs on Redis's clock; the key expires
/// once the bucket is full again. Replies {granted, left, retry µs, reset µs}.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local available = math.floor((now + capacity - tat) / interval)
local granted = math.min(want, available)
if granted <= 0 then
  return {0, 0, tat - capacity + interval - now, tat - now}
end
tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return {granted, available - granted, 0, tat - now}
";

/// How long Redis is left alone after a failure before it is tried again.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(250);
/// Longest wait for a new connection (in the background of requests, which stop
/// waiting after `timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const SHARDS: usize = 16;
/// How often (in decisions) the number of remembered keys is looked at.
const CHECK_EVERY: u64 = 1024;
const MIN_HIGH_WATER: usize = 4096;

/// Why Redis could not decide.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("unexpected reply {0:?}")]
    Reply(Vec<i64>),
    #[error("it failed less than {PAUSE_AFTER_FAILURE:?} ago")]
    Paused,
}

/// What the synchronous fast path found.
#[derive(Debug)]
pub enum Fast {
    Decided(Decision),
    /// Redis failed recently: apply the failure mode now.
    Paused,
    /// Ask Redis (`fetch`).
    Fetch,
}

/// What this instance knows about one key.
#[derive(Debug)]
struct Slot {
    /// Leased tokens not spent yet.
    tokens: u32,
    lease_until: Instant,
    /// Size of the last lease, and how much of it was spent.
    granted: u32,
    spent: u32,
    /// Tokens asked for next time.
    want: u32,
    limited_until: Option<Instant>,
    /// What Redis had left after the last grant, and when its bucket is full again.
    remote_left: u32,
    full_at: Instant,
    /// Held by the one fetch in progress for this key.
    fetch: Arc<tokio::sync::Mutex<()>>,
}

impl Slot {
    fn new(now: Instant) -> Self {
        Slot {
            tokens: 0,
            lease_until: now,
            granted: 0,
            spent: 0,
            want: 1,
            limited_until: None,
            remote_left: 0,
            full_at: now,
            fetch: Arc::default(),
        }
    }

    /// Decides from what is known locally, if possible.
    fn take(&mut self, now: Instant) -> Option<Decision> {
        if let Some(until) = self.limited_until {
            if until > now {
                return Some(Decision::Limited {
                    retry: until - now,
                    reset: self.full_at.saturating_duration_since(now),
                });
            }
            self.limited_until = None;
        }
        if self.tokens > 0 && self.lease_until > now {
            self.tokens -= 1;
            self.spent += 1;
            return Some(Decision::Allowed {
                remaining: self.tokens.saturating_add(self.remote_left),
                reset: self.full_at.saturating_duration_since(now),
            });
        }
        None
    }

    /// The next lease size: double while leases are used up, else what was used.
    fn next_want(&mut self, batch: u32) -> u32 {
        self.want = if self.granted > 0 && self.spent >= self.granted {
            self.want.saturating_mul(2)
        } else {
            self.spent
        }
        .clamp(1, batch);
        self.want
    }

    fn keep(&self, now: Instant) -> bool {
        self.limited_until.is_some_and(|t| t > now)
            || (self.tokens > 0 && self.lease_until > now)
            || Arc::strong_count(&self.fetch) > 1
    }
}

#[derive(Debug)]
pub struct RedisLimit {
    client: ::redis::Client,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    script: ::redis::Script,
    /// `meshgate:ratelimit:<policy>:<key kind>:`
    prefix: Vec<u8>,
    interval_us: u64,
    capacity_us: u64,
    batch: u32,
    lease: Duration,
    pub timeout: Duration,
    pub failure_mode: config::FailureMode,
    shards: Box<[Mutex<HashMap<Key, Slot>>]>,
    hasher: RandomState,
    epoch: Instant,
    /// Nanoseconds after `epoch` until which Redis is not tried (0: try).
    paused_until: AtomicU64,
    decisions: AtomicU64,
    high_water: AtomicUsize,
}

impl RedisLimit {
    pub fn new(
        c: &config::RedisLimit,
        prefix: String,
        burst: u32,
        interval: Duration,
    ) -> Result<Self, String> {
        let client = ::redis::Client::open(c.url.as_str())
            .map_err(|e| format!("redis url {:?}: {e}", c.url))?;
        let batch = c.batch_for(burst).clamp(1, burst.max(1));
        // Long enough to spend a full batch at the limit's own pace, within reason.
        let lease = super::local::times(interval, batch)
            .clamp(Duration::from_millis(100), Duration::from_secs(60));
        Ok(RedisLimit {
            client,
            conn: tokio::sync::OnceCell::new(),
            script: ::redis::Script::new(SCRIPT),
            prefix: prefix.into_bytes(),
            interval_us: u64::try_from(interval.as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
            capacity_us: u64::try_from(interval.as_micros())
                .unwrap_or(u64::MAX)
                .max(1)
                .saturating_mul(u64::from(burst)),
            batch,
            lease,
            timeout: c.timeout.get(),
            failure_mode: c.failure_mode,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
            paused_until: AtomicU64::new(0),
            decisions: AtomicU64::new(0),
            high_water: AtomicUsize::new(MIN_HIGH_WATER),
        })
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, HashMap<Key, Slot>> {
        let i = self.hasher.hash_one(key) as usize % self.shards.len();
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn since_epoch(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn paused(&self, now: Instant) -> bool {
        self.since_epoch(now) < self.paused_until.load(Ordering::Relaxed)
    }

    fn pause(&self) {
        let until = self.since_epoch(Instant::now() + PAUSE_AFTER_FAILURE);
        self.paused_until.store(until, Ordering::Relaxed);
    }

    /// The synchronous fast path: spend a leased token, or repeat a known refusal.
    pub fn try_local(&self, key: &Key) -> Fast {
        self.housekeeping();
        let now = Instant::now();
        if let Some(d) = self.shard(key).get_mut(key).and_then(|s| s.take(now)) {
            return Fast::Decided(d);
        }
        if self.paused(now) {
            Fast::Paused
        } else {
            Fast::Fetch
        }
    }

    /// Asks Redis for a lease (one fetch per key at a time), within `timeout`.
    pub async fn fetch(&self, key: &Key) -> Result<Decision, StoreError> {
        let gate = self
            .shard(key)
            .entry(key.clone())
            .or_insert_with(|| Slot::new(Instant::now()))
            .fetch
            .clone();
        let result = match tokio::time::timeout(self.timeout, self.fetch_alone(key, &gate)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        };
        if matches!(
            result,
            Err(StoreError::Timeout(_) | StoreError::Redis(_) | StoreError::Reply(_))
        ) {
            self.pause();
        }
        result
    }

    async fn fetch_alone(
        &self,
        key: &Key,
        gate: &tokio::sync::Mutex<()>,
    ) -> Result<Decision, StoreError> {
        let _one_fetch_per_key = gate.lock().await;
        let want = {
            let now = Instant::now();
            let mut shard = self.shard(key);
            let slot = shard.entry(key.clone()).or_insert_with(|| Slot::new(now));
            // The fetch we waited for may have brought enough for us too.
            if let Some(d) = slot.take(now) {
                return Ok(d);
            }
            if self.paused(now) {
                return Err(StoreError::Paused);
            }
            slot.next_want(self.batch)
        };
        let mut conn = self.connection().await?;
        let mut redis_key = self.prefix.clone();
        redis_key.extend_from_slice(&key.store_suffix());
        let reply: Vec<i64> = self
            .script
            .key(redis_key)
            .arg(self.interval_us)
            .arg(self.capacity_us)
            .arg(want)
            .invoke_async(&mut conn)
            .await?;
        let &[granted, left, retry_us, reset_us] = reply.as_slice() else {
            return Err(StoreError::Reply(reply));
        };
        let micros = |n: i64| Duration::from_micros(n.max(0) as u64);
        let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        let now = Instant::now();
        let mut shard = self.shard(key);
        let slot = shard.entry(key.clone()).or_insert_with(|| Slot::new(now));
        slot.full_at = after(now, micros(reset_us));
        slot.remote_left = count(left);
        if granted <= 0 {
            let retry = micros(retry_us);
            slot.limited_until = Some(after(now, retry));
            return Ok(Decision::Limited {
                retry,
                reset: micros(reset_us),
            });
        }
        // This request takes the first token of the lease.
        slot.granted = count(granted);
        slot.spent = 1;
        slot.tokens = slot.granted - 1;
        slot.lease_until = now + self.lease;
        Ok(Decision::Allowed {
            remaining: slot.tokens.saturating_add(slot.remote_left),
            reset: micros(reset_us),
        })
    }

    /// The shared connection, created (not connected) on first use: connecting
    /// happens in the background of the first command and again after failures.
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(Duration::from_millis(200));
                ConnectionManager::new_lazy_with_config(self.client.clone(), cfg)
            })
            .await?;
        Ok(conn.clone())
    }

    /// Every `CHECK_EVERY` decisions: past the high-water mark, forget keys with
    /// no live lease, refusal or fetch, then raise the mark to twice what is left.
    fn housekeeping(&self) {
        if self.decisions.fetch_add(1, Ordering::Relaxed) % CHECK_EVERY != CHECK_EVERY - 1 {
            return;
        }
        let len =
            |s: &Mutex<HashMap<Key, Slot>>| s.lock().unwrap_or_else(PoisonError::into_inner).len();
        if self.shards.iter().map(len).sum::<usize>() <= self.high_water.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let mut left = 0;
        for s in &self.shards {
            let mut s = s.lock().unwrap_or_else(PoisonError::into_inner);
            s.retain(|_, slot| slot.keep(now));
            left += s.len();
        }
        self.high_water
            .store((left * 2).max(MIN_HIGH_WATER), Ordering::Relaxed);
    }
}

/// `now + d`, for a `d` that came over the network: capped, never panicking.
fn after(now: Instant, d: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(d.min(YEAR)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_grow_while_used_up_and_shrink_when_not() {
        let now = Instant::now();
        let mut s = Slot::new(now);
        assert_eq!(s.next_want(8), 1);
        for want in [2, 4, 8, 8] {
            s.granted = s.want;
            s.spent = s.granted;
            assert_eq!(s.next_want(8), want);
        }
        s.granted = 8;
        s.spent = 3;
        assert_eq!(
            s.next_want(8),
            3,
            "an expired lease shrinks to what was used"
        );
    }

    #[test]
    fn a_lease_is_spent_then_the_refusal_is_remembered() {
        let now = Instant::now();
        let mut s = Slot::new(now);
        assert!(s.take(now).is_none(), "nothing leased yet");
        s.tokens = 2;
        s.remote_left = 5;
        s.lease_until = now + Duration::from_secs(1);
        assert!(matches!(
            s.take(now),
            Some(Decision::Allowed { remaining: 6, .. })
        ));
        assert!(matches!(
            s.take(now),
            Some(Decision::Allowed { remaining: 5, .. })
        ));
        assert!(s.take(now).is_none(), "lease spent: ask Redis");
        s.tokens = 1;
        assert!(
            s.take(now + Duration::from_secs(2)).is_none(),
            "an expired lease is not spent"
        );
        s.limited_until = Some(now + Duration::from_secs(3));
        assert!(matches!(s.take(now), Some(Decision::Limited { .. })));
        assert!(s.take(now + Duration::from_secs(4)).is_none());
        assert!(s.limited_until.is_none());
    }
}
