//! The metrics registry (prometheus-client, OpenMetrics text). Labels are only
//! names from the config (routes, services, listeners, endpoints), fixed method
//! names and status classes, so cardinality is bounded by the config, never by
//! traffic (no raw paths, hosts or client addresses).

use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::access_log::AccessRecord;

mod histogram;
mod labels;
mod mesh;
mod route;
mod tls;

pub use labels::*;
pub use mesh::{GraphEdge, MAX_SOURCES, MeshEdge, MeshGraph, MeshMetrics};
use route::NONE;
pub use route::{RouteMetrics, method_label, status_class};
pub use tls::{TlsFailure, TlsFailureLabels, TlsHandshakeFailures};

type Histograms<L> = Family<L, LatencyHistogram>;
pub use histogram::LatencyHistogram;

/// Every metric the gateway exports. One per process; survives config reloads.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Histograms<RouteLabel>,
    pub upstream_duration: Histograms<ServiceLabel>,
    pub request_bytes: Family<RouteLabel, Counter>,
    pub response_bytes: Family<RouteLabel, Counter>,
    pub active_connections: Family<ListenerLabel, Gauge>,
    /// Connections switched to another protocol (WebSocket) and being relayed.
    pub upgraded_connections: Gauge,
    pub connections: Family<ListenerLabel, Counter>,
    pub retries: Family<ServiceLabel, Counter>,
    pub timeouts: Family<KindLabels, Counter>,
    pub overflows: Family<KindLabels, Counter>,
    pub ejections: Family<ServiceLabel, Counter>,
    pub endpoint_healthy: Family<EndpointLabels, Gauge>,
    pub endpoint_ejected: Family<EndpointLabels, Gauge>,
    pub config_reloads: Family<ResultLabel, Counter>,
    pub ratelimit_decisions: Family<RateLimitDecisionLabels, Counter>,
    pub ratelimit_store_errors: Family<RateLimitStoreLabels, Counter>,
    pub config_version: Gauge,
    pub access_log_dropped: Counter,
    pub spans_dropped: Counter,
    pub mirror_requests: Family<MirrorResultLabels, Counter>,
    pub mirror_diffs: Family<MirrorDiffLabels, Counter>,
    pub mirror_compared: Family<RouteLabel, Counter>,
    pub l4_connections: Family<L4Labels, Counter>,
    pub l4_bytes: Family<L4BytesLabels, Counter>,
    /// Failed TLS handshakes of `HTTPS` listeners, by listener and reason.
    pub tls_handshake_failures: TlsHandshakeFailures,
    /// East-west requests by caller and called service, and mesh authorization denials.
    pub mesh: MeshMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("meshgate");
        let requests = Family::default();
        r.register(
            "requests",
            "Requests served, by route, service, method and status class",
            requests.clone(),
        );
        let request_duration: Histograms<RouteLabel> = Family::default();
        r.register_with_unit(
            "request_duration",
            "Downstream request duration, first byte in to last byte out",
            Unit::Seconds,
            request_duration.clone(),
        );
        let upstream_duration: Histograms<ServiceLabel> = Family::default();
        r.register_with_unit(
            "upstream_duration",
            "Upstream try duration until response headers",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        let request_bytes = Family::default();
        r.register_with_unit(
            "request_body",
            "Request body bytes received",
            Unit::Bytes,
            request_bytes.clone(),
        );
        let response_bytes = Family::default();
        r.register_with_unit(
            "response_body",
            "Response body bytes sent",
            Unit::Bytes,
            response_bytes.clone(),
        );
        let active_connections = Family::default();
        r.register(
            "active_connections",
            "Open downstream connections",
            active_connections.clone(),
        );
        let upgraded_connections = Gauge::default();
        r.register(
            "upgraded_connections",
            "Upgraded (WebSocket) connections being relayed",
            upgraded_connections.clone(),
        );
        let connections = Family::default();
        r.register(
            "connections",
            "Downstream connections accepted",
            connections.clone(),
        );
        let retries = Family::default();
        r.register("retries", "Upstream retries", retries.clone());
        let timeouts = Family::default();
        r.register(
            "timeouts",
            "Requests that timed out, by kind",
            timeouts.clone(),
        );
        let overflows = Family::default();
        r.register(
            "circuit_breaker_overflows",
            "Requests shed by a circuit-breaker limit",
            overflows.clone(),
        );
        let ejections = Family::default();
        r.register(
            "outlier_ejections",
            "Endpoints ejected by outlier detection",
            ejections.clone(),
        );
        let endpoint_healthy = Family::default();
        r.register(
            "endpoint_healthy",
            "1 if the endpoint passes health checks",
            endpoint_healthy.clone(),
        );
        let endpoint_ejected = Family::default();
        r.register(
            "endpoint_ejected",
            "1 while the endpoint is ejected",
            endpoint_ejected.clone(),
        );
        let config_reloads = Family::default();
        r.register(
            "config_reloads",
            "Config reloads, by result (ok, failed)",
            config_reloads.clone(),
        );
        let ratelimit_decisions = Family::default();
        r.register(
            "ratelimit_decisions",
            "Rate-limit decisions, by policy and decision (allowed, limited)",
            ratelimit_decisions.clone(),
        );
        let ratelimit_store_errors = Family::default();
        r.register(
            "ratelimit_store_errors",
            "Requests decided by failureMode because the rate-limit store (Redis) failed \
             or timed out, by policy and mode (open, closed)",
            ratelimit_store_errors.clone(),
        );
        let config_version = Gauge::default();
        r.register(
            "config_version",
            "Version of the config being served",
            config_version.clone(),
        );
        let access_log_dropped = Counter::default();
        r.register(
            "access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            access_log_dropped.clone(),
        );
        let spans_dropped = Counter::default();
        r.register(
            "spans_dropped",
            "Trace spans dropped: exporter queue full or export failed",
            spans_dropped.clone(),
        );
        let mirror_requests = Family::default();
        r.register(
            "mirror_requests",
            "Mirrored (shadow) requests, by route and result (sent, skipped, failed, timeout)",
            mirror_requests.clone(),
        );
        let mirror_diffs = Family::default();
        r.register(
            "mirror_diffs",
            "Shadow responses that differ from the primary's, by route and kind (status, header, body)",
            mirror_diffs.clone(),
        );
        let mirror_compared = Family::default();
        r.register(
            "mirror_compared",
            "Primary and shadow response pairs compared (diff mode), by route",
            mirror_compared.clone(),
        );
        let l4_connections = Family::default();
        r.register(
            "l4_connections",
            "Connections accepted by TCP and TLS passthrough listeners, by listener and service",
            l4_connections.clone(),
        );
        let l4_bytes = Family::default();
        r.register_with_unit(
            "l4",
            "Bytes proxied by TCP and TLS passthrough listeners, by listener and direction (in, out)",
            Unit::Bytes,
            l4_bytes.clone(),
        );
        Metrics {
            // Before `registry: r`, which moves the registry.
            tls_handshake_failures: TlsHandshakeFailures::register(&mut r),
            mesh: MeshMetrics::register(&mut r),
            l4_connections,
            l4_bytes,
            mirror_requests,
            mirror_diffs,
            mirror_compared,
            registry: r,
            requests,
            request_duration,
            upstream_duration,
            request_bytes,
            response_bytes,
            active_connections,
            upgraded_connections,
            connections,
            retries,
            timeouts,
            overflows,
            ejections,
            endpoint_healthy,
            endpoint_ejected,
            config_reloads,
            ratelimit_decisions,
            ratelimit_store_errors,
            config_version,
            access_log_dropped,
            spans_dropped,
        }
    }

    /// OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records a finished request: through its route's cached handles when it
    /// matched one, else by label lookup (requests no route matched).
    pub fn on_request(&self, r: &AccessRecord) {
        if let Some(edge) = &r.mesh {
            edge.on_request(r);
        }
        if let Some(route) = &r.route_metrics {
            route.on_request(r);
            return;
        }
        let route = Name(r.route.clone().unwrap_or_else(|| NONE.clone()));
        let service = Name(r.service.clone().unwrap_or_else(|| NONE.clone()));
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                service,
                method: method_label(&r.method),
                status_class: status_class(r.status),
            })
            .inc();
        let route = RouteLabel { route };
        self.request_duration
            .get_or_create(&route)
            .observe(r.duration);
        let bytes_in = r.bytes_in_total();
        if bytes_in > 0 {
            self.request_bytes.get_or_create(&route).inc_by(bytes_in);
        }
        if r.bytes_out > 0 {
            self.response_bytes
                .get_or_create(&route)
                .inc_by(r.bytes_out);
        }
    }

    pub fn service(&self, name: &Arc<str>) -> ServiceLabel {
        ServiceLabel {
            service: Name(name.clone()),
        }
    }

    pub fn reloaded(&self, ok: bool, version: u64) {
        self.config_reloads
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
        if ok {
            self.config_version.set(version as i64);
        }
    }
}

/// Handles of one rate-limit policy's counters, resolved when the policy is
/// compiled so a decision is one atomic increment.
#[derive(Debug, Clone)]
pub struct RateLimitMetrics {
    pub allowed: Counter,
    pub limited: Counter,
    /// Store failures that let the request through (`failureMode: open`).
    pub store_errors_open: Counter,
    /// Store failures that refused the request (`failureMode: closed`).
    pub store_errors_closed: Counter,
}

impl Metrics {
    /// Resolves the counters of rate-limit policy `policy`.
    pub fn rate_limit(&self, policy: &str) -> RateLimitMetrics {
        let policy = Name::from(policy);
        let decision = |decision| {
            self.ratelimit_decisions
                .get_or_create(&RateLimitDecisionLabels {
                    policy: policy.clone(),
                    decision,
                })
                .clone()
        };
        let store = |mode| {
            self.ratelimit_store_errors
                .get_or_create(&RateLimitStoreLabels {
                    policy: policy.clone(),
                    mode,
                })
                .clone()
        };
        RateLimitMetrics {
            allowed: decision("allowed"),
            limited: decision("limited"),
            store_errors_open: store("open"),
            store_errors_closed: store("closed"),
        }
    }
}
