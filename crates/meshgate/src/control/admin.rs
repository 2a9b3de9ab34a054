//! The control plane's admin endpoint (plain HTTP, no authentication — keep it
//! on loopback or a management network): `/healthz`, `/readyz`, `/metrics`
//! (Prometheus text) and `/proxies` (what `meshgate status` shows, as JSON).
//!
//! The gauges are computed from the store's proxy records at scrape time, so
//! they need no bookkeeping on the stream path; the counters are the automatic
//! rollback ones (`server::rollback`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use meshgate_control::server::ControlPlane;
use meshgate_control::server::operator::proxy_state;
use meshgate_control::server::rollback::RollbackMetrics;
use meshgate_control::store::ProxyRecord;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Clone)]
struct AdminState {
    cp: Arc<ControlPlane>,
    rollbacks: RollbackMetrics,
}

/// A running admin endpoint; `shutdown` stops it.
pub struct Admin {
    local: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Admin {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

pub async fn serve(
    address: SocketAddr,
    cp: Arc<ControlPlane>,
    rollbacks: RollbackMetrics,
) -> std::io::Result<Admin> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .route("/metrics", get(metrics))
        .route("/proxies", get(proxies))
        .with_state(AdminState { cp, rollbacks });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "control-plane admin endpoint failed");
        }
    });
    tracing::info!(address = %local, "control-plane admin endpoint listening");
    Ok(Admin { local, stop, task })
}

fn current_version(cp: &ControlPlane) -> u64 {
    cp.store.config().borrow().as_ref().map_or(0, |r| r.version)
}

/// The store's proxy records, or a 503 naming the store error.
async fn records(cp: &ControlPlane) -> Result<Vec<ProxyRecord>, Response> {
    cp.store
        .proxies()
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response())
}

/// `/proxies`: the current config version and every proxy record (the store's
/// field names, snake_case) with its `state` (`current`, `behind`, `rejected`),
/// as `meshgate status` shows them.
async fn proxies(State(s): State<AdminState>) -> Response {
    let records = match records(&s.cp).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let current = current_version(&s.cp);
    let proxies: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("state".into(), proxy_state(r, current).into());
            }
            v
        })
        .collect();
    axum::Json(serde_json::json!({
        "replica": s.cp.options.replica,
        "config_version": current,
        "proxies": proxies,
    }))
    .into_response()
}

/// `/metrics`: gauges from the proxy records plus the rollback counters.
async fn metrics(State(s): State<AdminState>) -> Response {
    let records = match records(&s.cp).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let current = current_version(&s.cp);
    let mut registry = Registry::default();
    let version = Gauge::<i64>::default();
    version.set(i64::try_from(current).unwrap_or(i64::MAX));
    registry.register(
        "meshgate_control_config_version",
        "The current config version",
        version,
    );
    let by_state = Family::<[(&'static str, &'static str); 1], Gauge>::default();
    let streams = Gauge::<i64>::default();
    for state in ["current", "behind", "rejected", "disconnected"] {
        // Every state appears, at 0 when no proxy is in it.
        let _ = by_state.get_or_create(&[("state", state)]);
    }
    for r in &records {
        let state = if r.connected {
            proxy_state(r, current)
        } else {
            "disconnected"
        };
        by_state.get_or_create(&[("state", state)]).inc();
        if r.connected && r.replica == s.cp.options.replica {
            streams.inc();
        }
    }
    registry.register(
        "meshgate_control_proxies",
        "Known proxies (every replica) by where they stand against the current version",
        by_state,
    );
    registry.register(
        "meshgate_control_streams",
        "Proxy streams held by this replica",
        streams,
    );
    s.rollbacks.register(&mut registry);
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
