//! A remote JWKS: fetched in the background when the policy is compiled, again
//! every `jwksRefresh` (stale keys keep serving meanwhile), and on demand when a
//! token names a `kid` no key has. Every fetch, whatever asked for it, is at least
//! `jwksMinRefreshInterval` after the previous one, and concurrent askers share one
//! fetch, so forged `kid`s cannot turn into a flood of requests to the issuer. A
//! failed fetch keeps the keys already held.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshgate_config as config;
use serde_json::Value;

use super::keys::{VerifyKey, parse_jwks};
use crate::http_client::{HttpClient, parse_url};

/// JWKS documents larger than this are refused (a hostile or broken endpoint).
const MAX_JWKS_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
struct Held {
    keys: Arc<Vec<VerifyKey>>,
    /// The `keys` list as fetched, to tell whether a refresh changed anything.
    doc: Value,
    fetched_at: Option<Instant>,
    error: Option<String>,
    /// Entries left out of the last good document, and why.
    skipped: Vec<String>,
}

#[derive(Debug)]
pub(super) struct Jwks {
    pub url: String,
    client: HttpClient,
    timeout: Duration,
    every: Duration,
    min_interval: Duration,
    epoch: Instant,
    held: Mutex<Held>,
    /// Held while fetching: concurrent askers wait for the one fetch.
    fetch_lock: tokio::sync::Mutex<()>,
    /// Milliseconds since `epoch` of the last fetch attempt, plus one (0: never).
    last_attempt: AtomicU64,
    /// Milliseconds since `epoch` when the periodic refresh is due.
    due: AtomicU64,
    /// A background refresh is scheduled or running.
    pub background: AtomicBool,
}

/// What a refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refreshed {
    /// Fetched; whether the key set changed.
    Fetched { changed: bool },
    /// Fetching failed; the old keys stay.
    Failed,
    /// Another fetch was too recent (or just happened while waiting).
    Skipped,
}

impl Jwks {
    pub fn new(url: &str, c: &config::JwtPolicy) -> Result<Self, String> {
        parse_url(url).map_err(|e| format!("jwksUrl: {e}"))?;
        Ok(Jwks {
            url: url.to_owned(),
            client: HttpClient::new(MAX_JWKS_BYTES),
            timeout: c.jwks_timeout.get(),
            every: c.jwks_refresh.get(),
            min_interval: c.jwks_min_refresh_interval.get(),
            epoch: Instant::now(),
            held: Mutex::default(),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_attempt: AtomicU64::new(0),
            due: AtomicU64::new(0),
            background: AtomicBool::new(false),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn keys(&self) -> Arc<Vec<VerifyKey>> {
        self.held().keys.clone()
    }

    /// The periodic refresh is due (one atomic load: checked on every request).
    pub fn due(&self) -> bool {
        self.now_ms() >= self.due.load(Ordering::Relaxed)
    }

    /// A fetch is running now.
    pub fn in_flight(&self) -> bool {
        self.fetch_lock.try_lock().is_err()
    }

    /// Time until another fetch is allowed (zero: now).
    fn wait(&self) -> Duration {
        let last = self.last_attempt.load(Ordering::Relaxed);
        if last == 0 {
            return Duration::ZERO;
        }
        let since = Duration::from_millis(self.now_ms().saturating_sub(last - 1));
        self.min_interval.saturating_sub(since)
    }

    /// Whether asking now could bring new keys (a fetch is running or allowed).
    pub fn may_fetch(&self) -> bool {
        self.in_flight() || self.wait().is_zero()
    }

    /// Fetches unless the last attempt is too recent; waits for a running fetch.
    pub async fn refresh(&self) -> Refreshed {
        let _one = self.fetch_lock.lock().await;
        if !self.wait().is_zero() {
            return Refreshed::Skipped;
        }
        let started = self.now_ms();
        self.last_attempt.store(started + 1, Ordering::Relaxed);
        let fetched = self.fetch().await;
        let mut held = self.held();
        match fetched {
            Ok(doc) => {
                let (keys, skipped) = parse_jwks(&doc);
                let list = doc.get("keys").cloned().unwrap_or_default();
                let changed = held.doc != list;
                *held = Held {
                    keys: Arc::new(keys),
                    doc: list,
                    fetched_at: Some(Instant::now()),
                    error: None,
                    skipped,
                };
                self.due
                    .store(started + self.every.as_millis() as u64, Ordering::Relaxed);
                Refreshed::Fetched { changed }
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed; keeping the keys held");
                held.error = Some(e);
                // Retry once the rate limit allows, not a whole refresh period later.
                self.due.store(
                    started + self.min_interval.as_millis() as u64,
                    Ordering::Relaxed,
                );
                Refreshed::Failed
            }
        }
    }

    async fn fetch(&self) -> Result<Value, String> {
        let resp = self
            .client
            .get(&self.url, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status.is_success() {
            return Err(format!("answered {}", resp.status));
        }
        let doc: Value =
            serde_json::from_slice(&resp.body).map_err(|e| format!("not JSON: {e}"))?;
        if !doc.get("keys").is_some_and(Value::is_array) {
            return Err("not a JWKS document (no \"keys\" list)".into());
        }
        Ok(doc)
    }

    /// The last fetch failed.
    pub fn failing(&self) -> bool {
        self.held().error.is_some()
    }

    /// The JWKS's state in a few words, for `explain`.
    pub fn status(&self) -> String {
        let held = self.held();
        let mut out = match (&held.fetched_at, &held.error) {
            (None, None) => format!("JWKS {} not fetched yet", self.url),
            (None, Some(e)) => format!("JWKS {} could not be fetched: {e}", self.url),
            (Some(at), None) => format!("JWKS fetched {}s ago", at.elapsed().as_secs()),
            (Some(at), Some(e)) => format!(
                "JWKS fetched {}s ago, last refresh failed: {e}",
                at.elapsed().as_secs()
            ),
        };
        if !held.skipped.is_empty() {
            out.push_str(&format!(" (left out: {})", held.skipped.join("; ")));
        }
        let wait = self.wait();
        if !wait.is_zero() {
            out.push_str(&format!("; next fetch allowed in {}ms", wait.as_millis()));
        }
        out
    }
}
