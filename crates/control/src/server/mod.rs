//! The control-plane gRPC server: one [`ControlPlane`] per process, serving
//! config discovery to proxies ([`discovery`]), the service registry
//! ([`registry`]) and the operator API ([`operator`]) on one (TLS) port, all
//! reading and writing the same [`Store`]. Its metrics live in one registry
//! ([`metrics`]); [`ControlPlane::serve_with_shutdown`] stops gracefully.

pub mod auth;
pub mod discovery;
pub mod metrics;
pub mod operator;
pub mod registry;
pub mod rollback;
pub mod snapshots;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};

use crate::proto::v1::Snapshot;
use crate::store::Store;

pub use auth::{Scope, Token, Tokens};

/// Settings of a control-plane process.
#[derive(Debug, Clone)]
pub struct Options {
    /// This replica's name (shown in status next to the proxies it holds).
    pub replica: String,
    pub tokens: Tokens,
    /// Roll a version back when too many proxies refuse it (None: never).
    pub auto_rollback: Option<rollback::AutoRollback>,
}

/// The control plane's shared state; cheap to clone behind an `Arc`.
pub struct ControlPlane {
    pub store: Arc<dyn Store>,
    pub options: Options,
    /// The latest snapshot for gateways (None until a config is applied).
    pub snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    /// This replica's metrics (`/metrics` of the admin endpoint).
    pub metrics: metrics::ControlMetrics,
    /// Each snapshot's encoding, made once and shared by every stream sending it.
    pub encoded: crate::snapshot::EncodeCache,
    /// Set when the server stops: every config stream ends (see `serve_with_shutdown`).
    stopping: watch::Sender<bool>,
}

impl ControlPlane {
    /// A control plane on `store`: starts the snapshot builder (config +
    /// discovered endpoints → the snapshot proxies follow). Must be called inside
    /// a tokio runtime; the builder runs until the control plane is dropped.
    pub fn start(store: Arc<dyn Store>, options: Options) -> Arc<ControlPlane> {
        let snapshots = snapshots::start(store.clone());
        // The rollback watcher counts into the same registry.
        let rollbacks = options
            .auto_rollback
            .as_ref()
            .map(|a| a.metrics.clone())
            .unwrap_or_default();
        Arc::new(ControlPlane {
            store,
            options,
            snapshots,
            metrics: metrics::ControlMetrics::new(rollbacks),
            encoded: crate::snapshot::EncodeCache::default(),
            stopping: watch::channel(false).0,
        })
    }

    /// Serves every service over TLS with `identity` (PEM certificate chain and
    /// key) on `listener`, until it fails (streams it accepted run on their own
    /// tasks: to stop, use [`Self::serve_with_shutdown`] or shut the runtime down).
    pub async fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        identity: Identity,
    ) -> Result<(), tonic::transport::Error> {
        self.serve_with_shutdown(listener, identity, std::future::pending())
            .await
    }

    /// [`Self::serve`] until `signal` completes, then stops gracefully: no new
    /// connections, every config stream ends (its proxy sees the end of the
    /// stream and reconnects, to this replica when it is back or to another
    /// behind the same address), calls in flight finish; returns once every
    /// connection is closed. A proxy that does not close its side of the stream
    /// can hold this up: bound the wait with a timeout.
    /// HTTP/2 keep-alives detect proxies that vanished without closing their
    /// stream, so their status turns to disconnected.
    pub async fn serve_with_shutdown(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        identity: Identity,
        signal: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        self.serve_routes_with_shutdown(self.routes(), listener, identity, signal)
            .await
    }

    /// [`Self::serve_with_shutdown`] serving `routes`: this control plane's own
    /// ([`Self::routes`]) plus services of crates that build on it (the mesh CA's
    /// `Identity` service, `meshgate_mesh::ca::service`).
    pub async fn serve_routes_with_shutdown(
        self: &Arc<Self>,
        routes: tonic::service::Routes,
        listener: tokio::net::TcpListener,
        identity: Identity,
        signal: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        // A control plane served again after a stop streams again.
        self.stopping.send_replace(false);
        let stopping = self.stopping.clone();
        let signal = async move {
            signal.await;
            stopping.send_replace(true);
        };
        tonic::transport::Server::builder()
            .tls_config(ServerTlsConfig::new().identity(identity))?
            .http2_keepalive_interval(Some(Duration::from_secs(20)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                signal,
            )
            .await
    }

    /// Follows whether the server is stopping (config streams end when it is).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// The gRPC services, ready to be served (`tonic::transport::Server::builder()
    /// .add_routes(cp.routes())`).
    pub fn routes(self: &Arc<Self>) -> tonic::service::Routes {
        tonic::service::Routes::new(discovery::service(self.clone()))
            .add_service(registry::service(self.clone()))
            .add_service(operator::service(self.clone()))
    }
}
