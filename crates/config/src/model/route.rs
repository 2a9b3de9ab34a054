//! Routes: which requests (`matches`) go where (`backendRefs`), through which `filters`,
//! with which `timeouts` and `retry` policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Filter, RetryOn};
use crate::Duration;

/// A routing rule, in the shape of a Gateway API HTTPRoute rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    /// Unique name; appears in the access log and in `explain`.
    pub name: String,
    /// Host names this route serves: exact (`api.example.com`) or wildcard
    /// (`*.example.com`, which matches any sub-domain at any depth, not the apex).
    /// Empty: every host.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Names of the listeners this route is attached to. Empty: all listeners.
    #[serde(default)]
    pub listeners: Vec<String>,
    /// Conditions; the route applies when ANY of them matches. Empty: a single
    /// `PathPrefix /` match.
    #[serde(default)]
    pub matches: Vec<RouteMatch>,
    /// Policies (by name, from `policies`) run in this order after the listener's,
    /// before `filters`.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Filters run in the order given: request filters before forwarding,
    /// response filters on the way back.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Services to forward to, chosen per request by weight. Required unless a
    /// `RequestRedirect` or `DirectResponse` filter answers every request.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
    /// Keep a user on one of the `backendRefs` (canary, blue/green): the service is
    /// chosen from this request attribute's hash instead of at random, still in
    /// proportion to the weights. Requests without the attribute are placed at random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_affinity: Option<crate::model::HashOn>,
    /// Request timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Retry policy. Absent: no retries.
    #[serde(default)]
    pub retry: Option<Retry>,
    /// Bodies for errors the gateway answers on this route; tried before the
    /// top-level `errorResponses`.
    #[serde(default)]
    pub error_responses: Vec<crate::model::ErrorResponse>,
    /// Copy a share of this route's requests to a shadow service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<crate::model::Mirror>,
    /// Compress responses (gzip, brotli, zstd) for clients that accept it.
    /// Absent: responses pass through as the upstream sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<crate::model::Compression>,
}

/// One set of conditions; all given conditions must hold.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteMatch {
    /// Path condition. Absent: `PathPrefix /`.
    #[serde(default)]
    pub path: Option<PathMatch>,
    /// HTTP method, e.g. `GET`. Absent: any method.
    #[serde(default)]
    pub method: Option<String>,
    /// Header conditions; all must hold. Header names are case-insensitive.
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
    /// Query parameter conditions; all must hold. Names are case-sensitive.
    #[serde(default)]
    pub query_params: Vec<HeaderMatch>,
}

/// How a request path is matched.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PathMatch {
    /// `Exact`, `PathPrefix` (default; segment-aware: `/api` matches `/api` and
    /// `/api/x`, not `/apix`) or `RegularExpression` (whole path must match).
    #[serde(default, rename = "type")]
    pub kind: PathMatchType,
    /// The path, prefix or regular expression. Paths must start with `/`.
    pub value: String,
}

/// Path match kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
pub enum PathMatchType {
    Exact,
    #[default]
    PathPrefix,
    RegularExpression,
}

/// A header or query parameter condition.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderMatch {
    /// `Exact` (default) or `RegularExpression` (whole value must match).
    #[serde(default, rename = "type")]
    pub kind: StringMatchType,
    /// Header or parameter name.
    pub name: String,
    /// Expected value or regular expression.
    pub value: String,
}

/// String match kinds for headers and query parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
pub enum StringMatchType {
    #[default]
    Exact,
    RegularExpression,
}

/// A weighted reference to a service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendRef {
    /// Name of an entry in `services`.
    pub name: String,
    /// Relative share of requests. Default 1; 0 sends nothing (blue/green switch).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// Timeouts, named as in the Gateway API.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Timeouts {
    /// Whole request, all tries and backoff included, until response headers arrive.
    /// Expiry answers 504. Absent: no limit.
    #[serde(default)]
    pub request: Option<Duration>,
    /// One try against one endpoint, until response headers arrive. Expiry counts as a
    /// `timeout` failure (retried if `retry.retryOn` has `timeout`), else 504.
    /// Absent: no per-try limit.
    #[serde(default)]
    pub backend_request: Option<Duration>,
    /// Upgraded connections (WebSocket over HTTP/1.1 `Upgrade` or HTTP/2 extended
    /// CONNECT): closed when no byte moved either way for this long. Must be greater
    /// than 0. Absent: 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_idle: Option<Duration>,
}

/// Retry policy of a route.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Retry {
    /// Retries after the first try. Default 2.
    #[serde(default = "Retry::default_attempts")]
    pub attempts: u32,
    /// Which failures are retried. Default `[connect-failure, reset, 502, 503, 504]`.
    #[serde(default = "Retry::default_retry_on")]
    pub retry_on: Vec<RetryOn>,
    /// Exponential backoff with full jitter between tries.
    #[serde(default)]
    pub backoff: Backoff,
    /// Also retry methods that are not idempotent (POST, PATCH). Default false.
    #[serde(default)]
    pub retry_non_idempotent: bool,
    /// How much of a request body is kept for replay on retry: bodies with a
    /// `content-length` up to this are held; others are streamed with a copy,
    /// replayable until more than this has been read. Default 65536.
    #[serde(default = "Retry::default_buffer")]
    pub body_buffer_bytes: u64,
}

impl Retry {
    fn default_attempts() -> u32 {
        2
    }
    pub fn default_retry_on() -> Vec<RetryOn> {
        vec![
            RetryOn::ConnectFailure,
            RetryOn::Reset,
            RetryOn::Status(502),
            RetryOn::Status(503),
            RetryOn::Status(504),
        ]
    }
    fn default_buffer() -> u64 {
        64 * 1024
    }
}

/// Backoff between retries: try n waits a random time in `[0, min(max, base * 2^n)]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Backoff {
    /// Default `25ms`.
    #[serde(default = "Backoff::default_base")]
    pub base: Duration,
    /// Default `250ms`.
    #[serde(default = "Backoff::default_max")]
    pub max: Duration,
}

impl Backoff {
    fn default_base() -> Duration {
        Duration::from_millis(25)
    }
    fn default_max() -> Duration {
        Duration::from_millis(250)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Self::default_base(),
            max: Self::default_max(),
        }
    }
}
