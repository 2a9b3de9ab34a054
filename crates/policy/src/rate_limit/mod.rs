//! The `RateLimit` policy: `requests` per `per` with bursts of `burst`, counted
//! per key (consumer, client address, header value or route), either in this
//! process (`local`, governor's GCRA) or shared by every instance through Redis
//! (`redis`, leased tokens with a local fast path). Every decision can be told to
//! the client in `RateLimit-*` headers (`headers`); refusals are 429 with
//! `Retry-After`, and a Redis outage follows `failureMode`.

mod headers;
pub mod key;
mod local;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use meshgate_config as config;
use meshgate_core::filter::{Filter, Flow, FlowFuture, PolicyEnv, RequestCx};
use meshgate_core::rescue::ProxyError;
use meshgate_observe::metrics::RateLimitMetrics;

use self::redis::{Fast, RedisLimit, StoreError};
use headers::{Headers, seconds_up};
use key::{Key, KeySource};
use local::Local;

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted; `remaining` more would pass now, the bucket is full after `reset`.
    Allowed { remaining: u32, reset: Duration },
    /// Refused; one more passes after `retry`, the bucket is full after `reset`.
    Limited { retry: Duration, reset: Duration },
}

#[derive(Debug)]
enum Store {
    Local(Local),
    Redis(Box<RedisLimit>),
}

#[derive(Debug)]
pub struct RateLimit {
    key: KeySource,
    burst: u32,
    /// `None` when `headers: false`.
    headers: Option<Headers>,
    metrics: RateLimitMetrics,
    store: Store,
}

/// Compiles the policy named `name`.
pub fn compile(
    name: &str,
    c: &config::RateLimitPolicy,
    env: &PolicyEnv<'_>,
) -> Result<Arc<dyn Filter>, String> {
    Ok(Arc::new(RateLimit::compile(name, c, env)?))
}

impl RateLimit {
    pub fn compile(
        name: &str,
        c: &config::RateLimitPolicy,
        env: &PolicyEnv<'_>,
    ) -> Result<Self, String> {
        if c.requests == 0 {
            return Err("requests must be at least 1".into());
        }
        let burst = c.burst_or_requests();
        let interval = c.per.get() / c.requests;
        if burst == 0 || interval.is_zero() {
            return Err("burst and per / requests must be more than 0".into());
        }
        let key = KeySource::compile(c)?;
        let store = match &c.redis {
            None => Store::Local(Local::new(burst, interval)?),
            Some(r) => Store::Redis(Box::new(RedisLimit::new(
                r,
                format!("meshgate:ratelimit:{name}:{}:", key.kind()),
                burst,
                interval,
            )?)),
        };
        Ok(RateLimit {
            key,
            burst,
            headers: c.headers.then(|| Headers::new(burst)),
            metrics: env.metrics.rate_limit(name),
            store,
        })
    }

    fn decided(&self, d: Decision, key: &Key, cx: &mut RequestCx<'_>) -> Flow {
        match d {
            Decision::Allowed { remaining, reset } => {
                self.metrics.allowed.inc();
                if let Some(h) = &self.headers {
                    h.push(cx, remaining, reset, None);
                }
                let burst = self.burst;
                cx.note(|| format!("key {key}: {remaining} of {burst} left"));
                Flow::Continue
            }
            Decision::Limited { retry, reset } => {
                self.metrics.limited.inc();
                if let Some(h) = &self.headers {
                    h.push(cx, 0, reset, Some(retry));
                }
                cx.note(|| format!("key {key}: limited, retry in {}s", seconds_up(retry).max(1)));
                Flow::Reject(ProxyError::RateLimited)
            }
        }
    }

    /// Redis could not decide: `failureMode` does.
    fn unavailable(
        &self,
        mode: config::FailureMode,
        e: &StoreError,
        key: &Key,
        cx: &mut RequestCx<'_>,
    ) -> Flow {
        match mode {
            config::FailureMode::Open => {
                self.metrics.store_errors_open.inc();
                cx.note(|| format!("key {key}: redis unavailable ({e}), failing open"));
                Flow::Continue
            }
            config::FailureMode::Closed => {
                self.metrics.store_errors_closed.inc();
                cx.note(|| format!("key {key}: redis unavailable ({e}), failing closed"));
                Flow::Reject(ProxyError::RateLimitUnavailable)
            }
        }
    }
}

impl Filter for RateLimit {
    fn name(&self) -> &'static str {
        "RateLimit"
    }

    fn on_request(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        let key = self.key.key(req, cx);
        match &self.store {
            Store::Local(l) => self.decided(l.check(&key), &key, cx),
            Store::Redis(r) => match r.try_local(&key) {
                Fast::Decided(d) => self.decided(d, &key, cx),
                Fast::Paused => self.unavailable(r.failure_mode, &StoreError::Paused, &key, cx),
                Fast::Fetch => Flow::Defer,
            },
        }
    }

    fn on_request_async<'a>(
        &'a self,
        req: &'a mut http::request::Parts,
        cx: &'a mut RequestCx<'_>,
    ) -> FlowFuture<'a> {
        Box::pin(async move {
            let Store::Redis(r) = &self.store else {
                return Flow::Continue;
            };
            let key = self.key.key(req, cx);
            match r.fetch(&key).await {
                Ok(d) => self.decided(d, &key, cx),
                Err(e) => self.unavailable(r.failure_mode, &e, &key, cx),
            }
        })
    }
}
