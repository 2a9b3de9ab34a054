//! The read-only endpoints (`/routes`, `/services`, `/healthz`, `/readyz`,
//! `/metrics`) and the JSON error shape every failure uses, including axum's own
//! 404 and 405 answers.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AdminState;

/// The content type of `/metrics`.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// Machine-readable reason, e.g. `unauthorized`, `invalid_config`, `not_found`.
    error: String,
    /// For people: what went wrong (for `invalid_config`, one `file:line:col` line per error).
    message: String,
}

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        error: code.to_owned(),
        message: message.to_owned(),
    };
    (status, Json(body)).into_response()
}

pub(crate) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint")
}

/// Gives the answers axum makes itself (405, no body, no content type) the JSON
/// error shape, keeping their headers (`allow`).
pub(crate) async fn json_errors(resp: Response) -> Response {
    if resp.headers().contains_key(CONTENT_TYPE) {
        return resp;
    }
    let status = resp.status();
    let reason = status.canonical_reason().unwrap_or("error");
    let code = reason.to_ascii_lowercase().replace(' ', "_");
    let mut out = error(status, &code, reason);
    for (name, value) in resp.headers() {
        out.headers_mut().append(name, value.clone());
    }
    out
}

/// Liveness and readiness answers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    /// `ok` (liveness), `ready` or `not_ready`.
    status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Always, while the process runs", body = Status)))]
pub(crate) async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// The gateway takes traffic (false once shutdown began).
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Serving", body = Status),
    (status = 503, description = "Not (or no longer) serving", body = Status)))]
pub(crate) async fn readyz(State(state): State<AdminState>) -> Response {
    if state.reloader.gateway().is_ready() {
        Json(Status { status: "ready" }).into_response()
    } else {
        let body = Json(Status {
            status: "not_ready",
        });
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

/// Every metric, in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "observe", responses((status = 200,
    description = "OpenMetrics text exposition", body = String,
    content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
pub(crate) async fn metrics(State(state): State<AdminState>) -> Response {
    let text = state.reloader.gateway().metrics().encode();
    let mut resp = Response::new(Body::from(text));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
    resp
}

/// One compiled route rule, as matched on one listener.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RouteRow {
    /// The listener whose table holds the rule.
    listener: String,
    /// `host` (a hostname, `*.suffix` or `*` for any host), `route` (name), `path`
    /// (`{type, value}`), `method`, `headers` and `queryParams` (`[{name, type,
    /// value}]`), `backends` (`[{service, weight}]`) and `order` (declaration order).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    rule: serde_json::Value,
}

/// The compiled routes of every listener (in config order), each listener's in the
/// order lookups try them: exact hosts, wildcard hosts longest suffix first, then
/// any host; within a host exact paths, regexes, prefixes longest first, and rules
/// sharing a path by precedence (method, headers, query params, declaration order).
#[utoipa::path(get, path = "/routes", tag = "config",
    responses((status = 200, description = "Route rules in match order", body = Vec<RouteRow>)))]
pub(crate) async fn routes(State(state): State<AdminState>) -> Response {
    let snapshot = state.reloader.gateway().snapshot();
    let mut rows = Vec::new();
    for (listener, table) in &snapshot.tables {
        for entry in table.describe() {
            let Ok(rule) = serde_json::to_value(entry) else {
                continue;
            };
            let listener = listener.to_string();
            rows.push(RouteRow { listener, rule });
        }
    }
    Json(rows).into_response()
}

/// One upstream service.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServiceView {
    name: String,
    /// Load-balancer policy: `RoundRobin`, `Random`, `LeastRequest`, `PeakEwma`, `RingHash`.
    #[schema(value_type = String)]
    policy: meshgate_config::LbPolicy,
    /// Live endpoint state: `address`, `weight`, `healthy`, `ejected`, `activeRequests`.
    #[schema(value_type = Vec<Object>)]
    endpoints: Vec<meshgate_core::upstream::EndpointStatus>,
}

/// Every service (in config order) with its policy and endpoints' live state.
#[utoipa::path(get, path = "/services", tag = "config",
    responses((status = 200, description = "Services", body = Vec<ServiceView>)))]
pub(crate) async fn services(State(state): State<AdminState>) -> Json<Vec<ServiceView>> {
    let snapshot = state.reloader.gateway().snapshot();
    let views = snapshot.config.services.iter().filter_map(|svc| {
        let upstream = snapshot.upstreams.get(&svc.name)?;
        Some(ServiceView {
            name: svc.name.clone(),
            policy: svc.load_balancer.policy,
            endpoints: upstream.endpoint_status(),
        })
    });
    Json(views.collect())
}
