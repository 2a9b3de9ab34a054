//! Services: named upstream clusters with endpoints, load balancing, connection pool
//! and retry budget settings.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de};

use crate::Duration;

/// An upstream cluster.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    /// Unique name, referenced by `routes[].backendRefs[].name`.
    pub name: String,
    /// Static endpoints: `host:port` strings or `{address, weight}` objects. At
    /// least one, unless `discovery` is set (then they are served only until
    /// discovery has an answer, and where nothing discovers: `meshgate run`).
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Endpoints discovered by the control plane: registered instances or DNS.
    /// Once found they replace `endpoints`. Absent: static endpoints only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<super::Discovery>,
    /// How an endpoint is chosen per request.
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    /// TCP connect timeout to an endpoint. Expiry is a `connect-failure`. Default `1s`.
    #[serde(default = "Service::default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Keep-alive connection pool, per endpoint.
    #[serde(default)]
    pub pool: Pool,
    /// Caps retries so they cannot amplify an outage.
    #[serde(default)]
    pub retry_budget: RetryBudget,
    /// Active health checks. Absent: endpoints are assumed healthy.
    #[serde(default)]
    pub health_check: Option<super::HealthCheck>,
    /// Passive health: ejection of endpoints failing real traffic. Absent: off.
    #[serde(default)]
    pub outlier_detection: Option<super::OutlierDetection>,
    /// Load-shedding limits (always on; defaults 1024/1024/1024/3).
    #[serde(default)]
    pub circuit_breaker: super::CircuitBreaker,
    /// Send the client's Host upstream (default true). False: the endpoint's
    /// `host:port`. A route's `URLRewrite.hostname` overrides both.
    #[serde(default = "yes")]
    pub preserve_host: bool,
    /// Speak TLS to the endpoints. Absent: plain TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<super::UpstreamTls>,
    /// HTTP version spoken to the endpoints: `HTTP1` (default) or `HTTP2` (prior
    /// knowledge over cleartext, ALPN `h2` over TLS). Independent of what the client
    /// spoke: the gateway translates.
    #[serde(default)]
    pub protocol: super::UpstreamProtocol,
    /// HTTP/2 connection settings; only allowed when `protocol` is `HTTP2`.
    /// Absent: the defaults documented on each field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<super::UpstreamHttp2>,
    /// Originate mesh mTLS to the endpoints with the workload identity; they must
    /// present `spiffeId`. Excludes `tls`. Absent: no mesh mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<super::ServiceMesh>,
}

fn yes() -> bool {
    true
}

impl Service {
    fn default_connect_timeout() -> Duration {
        Duration::from_secs(1)
    }
}

/// An endpoint: `"10.0.0.7:8080"` or `{address: "10.0.0.7:8080", weight: 3}`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Endpoint {
    /// `host:port`; a host name is resolved when connecting.
    pub address: String,
    /// Relative share for weighted policies. Default 1, must be ≥ 1.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EndpointFields {
    address: String,
    #[serde(default = "one")]
    weight: u32,
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Endpoint;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"host:port\" or {address, weight}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Endpoint, E> {
                Ok(Endpoint {
                    address: v.to_owned(),
                    weight: 1,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Endpoint, A::Error> {
                let f = EndpointFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Endpoint {
                    address: f.address,
                    weight: f.weight,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Load balancing settings.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancer {
    /// Default `RoundRobin`.
    #[serde(default)]
    pub policy: LbPolicy,
    /// What `RingHash` hashes; exactly one of its fields. Required for `RingHash`.
    #[serde(default)]
    pub hash_on: Option<HashOn>,
}

/// Load balancing policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
pub enum LbPolicy {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
    /// Power of two random choices, fewer in-flight requests (per weight) wins.
    LeastRequest,
    /// Power of two choices by peak-EWMA latency × in-flight requests.
    PeakEwma,
    /// Consistent hashing on a ring of virtual nodes (`hashOn`); removing one of N
    /// endpoints moves about 1/N of the keys.
    RingHash,
}

/// The request attribute a hash policy uses. A request without it is balanced at random.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HashOn {
    /// A request header's value.
    #[serde(default)]
    pub header: Option<String>,
    /// A cookie's value.
    #[serde(default)]
    pub cookie: Option<String>,
    /// The client's IP address.
    #[serde(default)]
    pub client_ip: bool,
}

/// Upstream keep-alive pool, per endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pool {
    /// Idle connections kept per endpoint. Default 256.
    #[serde(default = "Pool::default_max_idle")]
    pub max_idle_per_endpoint: usize,
    /// Idle connections are closed after this. Default `90s`.
    #[serde(default = "Pool::default_idle_timeout")]
    pub idle_timeout: Duration,
}

impl Pool {
    fn default_max_idle() -> usize {
        256
    }
    fn default_idle_timeout() -> Duration {
        Duration::from_secs(90)
    }
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            max_idle_per_endpoint: Self::default_max_idle(),
            idle_timeout: Self::default_idle_timeout(),
        }
    }
}

/// Retry budget: retries may add at most `percent` % on top of first tries, plus
/// `minRetriesPerSecond` so low-traffic services can still retry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryBudget {
    /// Default 20 (0–1000).
    #[serde(default = "RetryBudget::default_percent")]
    pub percent: f32,
    /// Default 10.
    #[serde(default = "RetryBudget::default_min")]
    pub min_retries_per_second: u32,
    /// Window over which requests and retries are counted. Default `10s`.
    #[serde(default = "RetryBudget::default_ttl")]
    pub window: Duration,
}

impl RetryBudget {
    fn default_percent() -> f32 {
        20.0
    }
    fn default_min() -> u32 {
        10
    }
    fn default_ttl() -> Duration {
        Duration::from_secs(10)
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            percent: Self::default_percent(),
            min_retries_per_second: Self::default_min(),
            window: Self::default_ttl(),
        }
    }
}
