//! meshgate's admin REST API (axum): the served config and its reload, the compiled
//! routes in match order, services with their endpoints, liveness and readiness,
//! OpenMetrics, and an OpenAPI 3.1 document generated from the handlers.
//!
//! With a token (`admin.token`, or the variable `admin.tokenEnv` names) every endpoint
//! but `/healthz` and `/readyz` needs `authorization: Bearer <token>`. Without one the
//! API only ever binds to loopback.

mod auth;
mod config;
mod handlers;
mod mesh_graph;
mod openapi;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::middleware;
use meshgate_core::Reloader;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use openapi::document;

/// How long [`Admin::shutdown`] waits for open admin connections before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the handlers share: the reloader (and through it the gateway) and the token.
#[derive(Clone)]
pub struct AdminState {
    reloader: Arc<Reloader>,
    /// `None`: requests are not authenticated.
    token: Option<Arc<str>>,
}

impl AdminState {
    /// `token`: the bearer token every request but `/healthz` and `/readyz` must
    /// carry; `None` turns authentication off.
    pub fn new(reloader: Arc<Reloader>, token: Option<String>) -> Self {
        AdminState {
            reloader,
            token: token.map(Arc::from),
        }
    }
}

/// The admin API as an axum router (authentication included), for [`serve`] and tests.
pub fn router(state: AdminState) -> axum::Router {
    let (routes, doc) = openapi::api().split_for_parts();
    routes
        .fallback(handlers::not_found)
        .layer(axum::Extension(openapi::Document::new(&doc)))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(middleware::map_response(handlers::json_errors))
        .with_state(state)
}

/// A running admin server. Dropping it also stops the server (gracefully, in the
/// background); [`Admin::shutdown`] waits until it has stopped.
pub struct Admin {
    local: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Admin {
    /// The bound address (useful with port 0, or after the loopback fallback).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops accepting, lets requests in flight finish (up to 5s), then returns.
    pub async fn shutdown(self) {
        let Admin { stop, mut task, .. } = self;
        let _ = stop.send(());
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// Binds the admin API per `cfg` and serves it in a spawned task. `cfg.enabled` is
/// the caller's decision. Fails when the address cannot be bound, or when
/// `admin.tokenEnv` names a variable that is unset or empty (no silent downgrade).
pub async fn serve(
    reloader: Arc<Reloader>,
    cfg: &meshgate_config::Admin,
) -> std::io::Result<Admin> {
    let token = auth::resolve_token(cfg)?;
    let address = bind_address(cfg.address, token.is_some());
    let listener = tokio::net::TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let auth = if token.is_some() {
        "bearer token required"
    } else {
        "off (no admin.token or admin.tokenEnv; loopback only)"
    };
    tracing::info!(address = %local, auth, "admin API listening");
    let app = router(AdminState::new(reloader, token));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            // A send or a dropped handle both mean stop.
            let _ = stopped.await;
        });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "admin API server failed");
        }
    });
    Ok(Admin { local, stop, task })
}

/// Without a token the admin API must not be reachable from other hosts: a
/// non-loopback address is replaced by 127.0.0.1 on the same port.
fn bind_address(wanted: SocketAddr, has_token: bool) -> SocketAddr {
    if has_token || wanted.ip().is_loopback() {
        return wanted;
    }
    let safe = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), wanted.port());
    tracing::warn!(
        configured = %wanted,
        bound = %safe,
        "admin API has no token (set admin.token or admin.tokenEnv); binding to loopback only"
    );
    safe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_token_means_loopback() {
        let any: SocketAddr = "0.0.0.0:9901".parse().unwrap();
        let v6: SocketAddr = "[::]:9901".parse().unwrap();
        let lo6: SocketAddr = "[::1]:9901".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:9901".parse().unwrap();
        assert_eq!(bind_address(any, false), local);
        assert_eq!(bind_address(v6, false), local);
        assert_eq!(bind_address(lo6, false), lo6);
        assert_eq!(bind_address(any, true), any);
    }
}
