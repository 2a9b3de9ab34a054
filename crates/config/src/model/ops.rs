//! Operations settings: the admin API, config reload, and trace export.

use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// The admin API (config, routes, services, reload, health, metrics, OpenAPI).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Admin {
    /// Serve the admin API at all. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Default `127.0.0.1:9901`. Without a token the admin API only ever binds to
    /// loopback (a non-loopback address is replaced by 127.0.0.1, with a warning).
    #[serde(default = "Admin::default_address")]
    pub address: SocketAddr,
    /// Bearer token required on every admin request except `/healthz` and `/readyz`.
    #[serde(default, skip_serializing)]
    pub token: Option<String>,
    /// Name of an environment variable holding the token (used when `token` is absent).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Answer `x-meshgate-explain: <admin token>` request headers with the request's
    /// policy trace in an `x-meshgate-explain` response header. Needs a token.
    /// Default false.
    #[serde(default)]
    pub live_explain: bool,
}

impl Admin {
    /// The configured token, if any. A `tokenEnv` naming an unset or empty variable
    /// is an error: the operator asked for authentication, it must not silently go away.
    pub fn resolved_token(&self) -> Result<Option<String>, String> {
        match (&self.token, &self.token_env) {
            (Some(t), _) if t.is_empty() => Err("admin.token is empty".into()),
            (Some(t), _) => Ok(Some(t.clone())),
            (None, Some(var)) => match std::env::var(var) {
                Ok(t) if !t.is_empty() => Ok(Some(t)),
                _ => Err(format!(
                    "admin.tokenEnv names {var:?}, which is not set (or empty)"
                )),
            },
            (None, None) => Ok(None),
        }
    }
}

fn yes() -> bool {
    true
}

impl Admin {
    fn default_address() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9901))
    }
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            enabled: true,
            address: Self::default_address(),
            token: None,
            token_env: None,
            live_explain: false,
        }
    }
}

/// How the running gateway picks up config changes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Reload {
    /// Watch the config file and reload when it changes. Default true. SIGHUP and
    /// `POST /config/reload` always work.
    #[serde(default = "yes")]
    pub watch: bool,
    /// Quiet time after the last file event before reloading. Default `250ms`.
    #[serde(default = "Reload::default_debounce")]
    pub debounce: Duration,
}

impl Reload {
    fn default_debounce() -> Duration {
        Duration::from_millis(250)
    }
}

impl Default for Reload {
    fn default() -> Self {
        Self {
            watch: true,
            debounce: Self::default_debounce(),
        }
    }
}

/// Distributed tracing: W3C `traceparent` is always propagated; spans are exported
/// only when `otlp` is set.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tracing {
    /// OTLP/gRPC export. Absent: no export.
    #[serde(default)]
    pub otlp: Option<Otlp>,
    /// `service.name` resource attribute of exported spans. Default `meshgate`.
    #[serde(default = "Tracing::default_service_name")]
    pub service_name: String,
    /// Share of new traces (no incoming `traceparent`) that are sampled, 0.0–1.0.
    /// Incoming traces keep their caller's sampled flag. Default 1.0.
    #[serde(default = "Tracing::default_ratio")]
    pub sample_ratio: f64,
}

impl Tracing {
    fn default_service_name() -> String {
        "meshgate".into()
    }
    fn default_ratio() -> f64 {
        1.0
    }
}

impl Default for Tracing {
    fn default() -> Self {
        Self {
            otlp: None,
            service_name: Self::default_service_name(),
            sample_ratio: Self::default_ratio(),
        }
    }
}

/// An OTLP/gRPC collector.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Otlp {
    /// Collector URL, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Per export call. Default `5s`.
    #[serde(default = "Otlp::default_timeout")]
    pub timeout: Duration,
    /// Spans sent per export call at most. Default 512.
    #[serde(default = "Otlp::default_batch")]
    pub max_batch: usize,
}

impl Otlp {
    fn default_timeout() -> Duration {
        Duration::from_secs(5)
    }
    fn default_batch() -> usize {
        512
    }
}
