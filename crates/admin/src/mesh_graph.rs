//! `GET /mesh/graph`: the east-west service graph this proxy has seen, built from
//! the `meshgate_mesh_requests_total` and `meshgate_mesh_request_duration_seconds`
//! metrics — every caller → called service pair with its totals since start.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AdminState;

/// The service graph.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Graph {
    /// Every service that called or was called (`name.namespace`, or `unknown`
    /// for callers without a SPIFFE ID, `other` past the source cap), sorted.
    nodes: Vec<String>,
    /// Caller → called pairs, sorted by source then destination.
    edges: Vec<Edge>,
}

/// One caller → called service pair.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Edge {
    source: String,
    destination: String,
    /// Requests answered.
    requests: u64,
    /// Requests answered with a 5xx status.
    errors: u64,
    /// Requests answered with a 4xx status (including `403 mesh_denied`).
    client_errors: u64,
    /// Median latency in milliseconds, estimated from the histogram buckets.
    #[serde(skip_serializing_if = "Option::is_none")]
    p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds, estimated likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_ms: Option<f64>,
}

/// The east-west service graph (JSON).
#[utoipa::path(get, path = "/mesh/graph", tag = "observe",
    responses((status = 200, description = "Services and the calls between them", body = Graph)))]
pub(crate) async fn mesh_graph(State(state): State<AdminState>) -> Json<Graph> {
    let graph = state.reloader.gateway().metrics().mesh.graph();
    let edges = graph.edges.into_iter().map(|e| Edge {
        source: e.source,
        destination: e.destination,
        requests: e.requests,
        errors: e.errors,
        client_errors: e.client_errors,
        p50_ms: e.p50_ms,
        p99_ms: e.p99_ms,
    });
    Json(Graph {
        nodes: graph.nodes,
        edges: edges.collect(),
    })
}
