//! The configuration model: what a `meshgate.yaml` may say. Field names follow the
//! Kubernetes Gateway API where it has a name for the thing. Every struct rejects
//! unknown fields; every default is explicit here and in docs/configuration.md.

mod compression;
mod discovery;
mod error_response;
mod filter;
mod l4;
mod listener_tls;
mod mesh;
mod mesh_authz;
mod mesh_tls;
mod mirror;
mod ops;
mod policy;
mod resilience;
mod retry_on;
mod route;
mod service;
mod upstream_tls;

pub use compression::*;
pub use discovery::*;
pub use error_response::*;
pub use filter::*;
pub use l4::*;
pub use listener_tls::*;
pub use mesh::*;
pub use mesh_authz::*;
pub use mesh_tls::*;
pub use mirror::*;
pub use ops::*;
pub use policy::*;
pub use resilience::*;
pub use retry_on::RetryOn;
pub use route::*;
pub use service::*;
pub use upstream_tls::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

use crate::Duration;

/// A whole meshgate configuration document.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Process-wide settings: worker threads, drain timeout.
    #[serde(default)]
    pub runtime: Runtime,
    /// Where the per-request access log goes.
    #[serde(default)]
    pub access_log: AccessLog,
    /// The admin API.
    #[serde(default)]
    pub admin: Admin,
    /// How config changes are picked up.
    #[serde(default)]
    pub reload: Reload,
    /// W3C trace context propagation and OTLP span export.
    #[serde(default)]
    pub tracing: Tracing,
    /// Addresses the gateway accepts traffic on.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Routing rules, matched by Gateway API precedence (most specific wins), not by order.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Named upstream clusters that routes send traffic to.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Reusable policies (authentication, authorization, rate limits, CORS, limits), referenced by
    /// name from `listeners[].policies` and `routes[].policies`.
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// API consumers and their hashed credentials.
    #[serde(default)]
    pub consumers: Vec<Consumer>,
    /// Bodies for gateway-generated errors; a route's own `errorResponses` win.
    #[serde(default)]
    pub error_responses: Vec<ErrorResponse>,
    /// The service mesh: trust domain and the services that run with a sidecar
    /// (used by the control plane to generate each sidecar's config; a gateway
    /// ignores it). Absent: no mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<Mesh>,
}

/// Process-wide runtime settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Runtime {
    /// Worker threads serving traffic. Default: one per CPU core.
    #[serde(default)]
    pub worker_threads: Option<usize>,
    /// On SIGTERM/SIGINT: how long in-flight requests may take to finish before the
    /// process exits anyway. Default `30s`.
    #[serde(default = "Runtime::default_drain_timeout")]
    pub drain_timeout: Duration,
}

impl Runtime {
    fn default_drain_timeout() -> Duration {
        Duration::from_secs(30)
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            worker_threads: None,
            drain_timeout: Self::default_drain_timeout(),
        }
    }
}

/// Access log destination. One JSON object per line, per request.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessLog {
    /// `stdout` (default), `stderr`, `off`, or a file path (appended to).
    #[serde(default = "AccessLog::default_path")]
    pub path: String,
}

impl AccessLog {
    fn default_path() -> String {
        "stdout".into()
    }
}

impl Default for AccessLog {
    fn default() -> Self {
        Self {
            path: Self::default_path(),
        }
    }
}

/// A socket the gateway accepts connections on.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Listener {
    /// Unique name, referenced by `routes[].listeners`.
    pub name: String,
    /// `ip:port` to bind, e.g. `0.0.0.0:8080` or `[::1]:8080`.
    pub address: SocketAddr,
    /// Wire protocol. `HTTP` serves HTTP/1.1 and HTTP/2 cleartext (h2c prior knowledge)
    /// on the same port.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// Policies run first on every route of this listener, in this order.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Certificates and TLS settings; required when `protocol` is `HTTPS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Where connections go; required when `protocol` is `TCP` or `TLS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l4: Option<L4Listener>,
    /// `HTTP` listeners only: answer every request with `301` to the same host and
    /// path over HTTPS (e.g. `{port: 8443}`). Absent: requests are routed as usual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<HttpsRedirect>,
    /// `HTTP` and `TCP` listeners only: terminate mesh mTLS with the workload
    /// identity (client certificate required), `STRICT` or `PERMISSIVE`.
    /// Absent: no mesh mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<ListenerMesh>,
    /// Authorization of the verified callers (SPIFFE IDs, services) and their HTTP
    /// operations; see docs/mesh.md. Absent: no such check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_authorization: Option<MeshAuthorization>,
    /// The service this listener serves, as `name.namespace` (e.g.
    /// `orders.default`): the `destination` of east-west metrics and of the
    /// service graph. Default: the listener's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}

/// Listener protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
pub enum ListenerProtocol {
    /// HTTP/1.1 and h2c (prior knowledge), detected per connection.
    #[default]
    HTTP,
    /// TLS terminated here (certificates by SNI), then HTTP/1.1 or HTTP/2 by ALPN.
    HTTPS,
    /// Raw TCP proxied to a service (L4).
    TCP,
    /// TLS passed through untouched, routed by the ClientHello's server name (SNI).
    TLS,
}
