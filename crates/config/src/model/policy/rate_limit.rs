//! Settings of the `RateLimit` policy: what is counted (the key), how much is
//! allowed, and whether the count is local or shared through Redis.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// A rate limit: `requests` per `per`, with `burst` requests allowed at once.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitPolicy {
    /// What each bucket counts. Default `clientIp`.
    #[serde(default)]
    pub key: RateLimitKey,
    /// Header whose value is the key, when `key` is `header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Requests allowed per `per`.
    pub requests: u32,
    /// The window `requests` refers to: `1s`, `1m`, `1h`…
    pub per: Duration,
    /// Requests that may arrive at once after a quiet spell. Default: `requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Peers whose `x-forwarded-for` is believed (CIDRs), for `key: clientIp`. The
    /// client is the rightmost address not in this list. Default: none (the TCP peer).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Send `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` on every
    /// response (and `Retry-After` on 429s). Default true.
    #[serde(default = "yes")]
    pub headers: bool,
    /// Share the limit between gateway instances through Redis. Default: local only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisLimit>,
}

/// What a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitKey {
    /// The authenticated consumer (unauthenticated requests share one bucket).
    Consumer,
    /// The client address (see `trustedProxies`).
    #[default]
    ClientIp,
    /// The value of `header` (requests without it share one bucket).
    Header,
    /// The route: one bucket for everyone.
    Route,
}

/// A limit shared through Redis.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedisLimit {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// What to do when Redis cannot be reached in time: `open` admits the request,
    /// `closed` refuses it with 503. Either way it is counted in metrics. Default `open`.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Longest wait for Redis before `failureMode` applies. Default 50ms.
    #[serde(default = "RedisLimit::default_timeout")]
    pub timeout: Duration,
    /// Tokens an instance takes from Redis at once and then spends locally, so most
    /// requests need no Redis round trip. Over any window the instances together
    /// admit at most `burst` plus the refill, give or take one batch each.
    /// 1 asks Redis for every request. Default: `burst / 10`, at least 1, at most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

impl RedisLimit {
    fn default_timeout() -> Duration {
        Duration::from_millis(50)
    }

    /// The batch in effect for a bucket of `burst` tokens.
    pub fn batch_for(&self, burst: u32) -> u32 {
        self.batch.unwrap_or((burst / 10).clamp(1, 100))
    }
}

impl RateLimitPolicy {
    /// The bucket size in effect: `burst`, else `requests`.
    pub fn burst_or_requests(&self) -> u32 {
        self.burst.unwrap_or(self.requests)
    }
}

fn yes() -> bool {
    true
}

/// Behaviour when a dependency (Redis, an authorization service) is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    /// Let the request through.
    #[default]
    Open,
    /// Refuse the request.
    Closed,
}
