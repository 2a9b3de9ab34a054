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
}

impl RedisLimit {
    fn default_timeout() -> Duration {
        "50ms".parse().expect("valid duration")
    }
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
