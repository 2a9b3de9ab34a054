//! Per-service resilience settings: active health checks, outlier detection
//! (passive health), and circuit breaking.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Active health checking of every endpoint of a service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    /// Time between checks of one endpoint. Default `5s`.
    #[serde(default = "HealthCheck::default_interval")]
    pub interval: Duration,
    /// A check not answered within this fails. Default `1s`.
    #[serde(default = "HealthCheck::default_timeout")]
    pub timeout: Duration,
    /// Consecutive passes that bring an unhealthy endpoint back. Default 2.
    #[serde(default = "HealthCheck::default_healthy")]
    pub healthy_threshold: u32,
    /// Consecutive failures that take an endpoint out. Default 3.
    #[serde(default = "HealthCheck::default_unhealthy")]
    pub unhealthy_threshold: u32,
    /// HTTP check; exactly one of `http`, `tcp` and `grpc`.
    #[serde(default)]
    pub http: Option<HttpCheck>,
    /// TCP connect check; exactly one of `http`, `tcp` and `grpc`.
    #[serde(default)]
    pub tcp: Option<TcpCheck>,
    /// gRPC health-checking protocol (`grpc.health.v1.Health/Check` over h2c);
    /// exactly one of `http`, `tcp` and `grpc`.
    #[serde(default)]
    pub grpc: Option<GrpcCheck>,
    /// When every endpoint is unhealthy: `true` sends to all of them anyway (panic
    /// mode, as Envoy does), `false` (default) answers 503 `no_healthy_upstream`.
    #[serde(default)]
    pub panic_mode: bool,
}

impl HealthCheck {
    fn default_interval() -> Duration {
        Duration::from_secs(5)
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(1)
    }
    fn default_healthy() -> u32 {
        2
    }
    fn default_unhealthy() -> u32 {
        3
    }
}

/// An HTTP/1.1 GET health check.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpCheck {
    /// Path requested. Default `/healthz`.
    #[serde(default = "HttpCheck::default_path")]
    pub path: String,
    /// Host header. Default: the endpoint's `host:port`.
    #[serde(default)]
    pub host: Option<String>,
    /// Statuses that pass. Empty (default): any 200–399.
    #[serde(default)]
    pub expected_statuses: Vec<u16>,
}

impl HttpCheck {
    fn default_path() -> String {
        "/healthz".into()
    }
}

/// A gRPC health check: a unary `grpc.health.v1.Health/Check` over HTTP/2
/// cleartext (h2c) that passes only when the answer is `SERVING`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrpcCheck {
    /// The `service` field of the request. Default `""`: the server as a whole.
    #[serde(default)]
    pub service: String,
    /// `:authority` sent. Default: the endpoint's `host:port`.
    #[serde(default)]
    pub authority: Option<String>,
}

/// A TCP connect health check (passes when the connection is accepted).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpCheck {}

/// Passive health: eject endpoints that fail real traffic.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Eject after this many consecutive 5xx responses (0 disables). Default 5.
    #[serde(default = "OutlierDetection::default_consecutive")]
    pub consecutive_5xx: u32,
    /// Eject after this many consecutive connect failures, resets or timeouts
    /// (0 disables). Default 5.
    #[serde(default = "OutlierDetection::default_consecutive")]
    pub consecutive_failures: u32,
    /// Eject endpoints whose failure rate over a window is too high. Absent: off.
    #[serde(default)]
    pub failure_rate: Option<FailureRate>,
    /// First ejection lasts this long; the n-th lasts n times as long. Default `30s`.
    #[serde(default = "OutlierDetection::default_base")]
    pub base_ejection_time: Duration,
    /// Cap on one ejection's length. Default `300s`.
    #[serde(default = "OutlierDetection::default_max")]
    pub max_ejection_time: Duration,
    /// Never eject more than this percent of a service's endpoints (at least one
    /// endpoint always stays). Default 50.
    #[serde(default = "OutlierDetection::default_percent")]
    pub max_ejection_percent: u32,
}

impl OutlierDetection {
    fn default_consecutive() -> u32 {
        5
    }
    fn default_base() -> Duration {
        Duration::from_secs(30)
    }
    fn default_max() -> Duration {
        Duration::from_secs(300)
    }
    fn default_percent() -> u32 {
        50
    }
}

/// Failure-rate ejection, evaluated at the end of every window.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FailureRate {
    /// Percent of failed requests (5xx or connection failure) that ejects. Default 50.
    #[serde(default = "FailureRate::default_threshold")]
    pub threshold_percent: u32,
    /// Endpoints with fewer requests in the window are not judged. Default 20.
    #[serde(default = "FailureRate::default_min")]
    pub minimum_requests: u32,
    /// Default `10s`.
    #[serde(default = "FailureRate::default_window")]
    pub window: Duration,
}

impl FailureRate {
    fn default_threshold() -> u32 {
        50
    }
    fn default_min() -> u32 {
        20
    }
    fn default_window() -> Duration {
        Duration::from_secs(10)
    }
}

/// Limits that shed load immediately (503, reason `overflow`) instead of queueing.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Open upstream connections across all endpoints. Default 1024.
    #[serde(default = "CircuitBreaker::default_limit")]
    pub max_connections: u32,
    /// Requests sent but not yet answered with response headers. Default 1024.
    #[serde(default = "CircuitBreaker::default_limit")]
    pub max_pending_requests: u32,
    /// Requests in flight, response bodies included. Default 1024.
    #[serde(default = "CircuitBreaker::default_limit")]
    pub max_requests: u32,
    /// Retries in flight at once. Default 3.
    #[serde(default = "CircuitBreaker::default_retries")]
    pub max_retries: u32,
}

impl CircuitBreaker {
    fn default_limit() -> u32 {
        1024
    }
    fn default_retries() -> u32 {
        3
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            max_connections: Self::default_limit(),
            max_pending_requests: Self::default_limit(),
            max_requests: Self::default_limit(),
            max_retries: Self::default_retries(),
        }
    }
}
