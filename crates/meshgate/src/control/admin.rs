//! The control plane's admin endpoint (plain HTTP): `/healthz`, `/readyz`,
//! `/metrics` (the replica's one registry, `server::metrics`) and `/proxies`
//! (what `meshgate status` shows, as JSON) without authentication — keep it on
//! loopback or a management network — and the config changes of
//! [`super::config_api`] (`/config`, `/plan`, `/versions`, `/rollback`), which
//! need an operator token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use meshgate_control::server::ControlPlane;
use meshgate_control::server::metrics;
use meshgate_control::server::operator::proxy_state;
use meshgate_control::store::ProxyRecord;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Clone)]
pub(super) struct AdminState {
    pub(super) cp: Arc<ControlPlane>,
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

pub async fn serve(address: SocketAddr, cp: Arc<ControlPlane>) -> std::io::Result<Admin> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .route("/metrics", get(metrics))
        .route("/proxies", get(proxies))
        .merge(super::config_api::routes())
        .with_state(AdminState { cp });
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

/// `/metrics`: every metric of the replica (`server::metrics`).
async fn metrics(State(s): State<AdminState>) -> Response {
    match metrics::render(&s.cp).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e @ metrics::RenderError::Store(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
