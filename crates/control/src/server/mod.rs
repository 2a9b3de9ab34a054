//! The control-plane gRPC server: one [`ControlPlane`] per process, serving
//! config discovery to proxies ([`discovery`]), the service registry
//! ([`registry`]) and the operator API ([`operator`]) on one (TLS) port, all
//! reading and writing the same [`Store`].

pub mod auth;
pub mod discovery;
pub mod operator;
pub mod registry;
pub mod rollback;
pub mod snapshots;

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
}

impl ControlPlane {
    /// A control plane on `store`: starts the snapshot builder (config +
    /// discovered endpoints → the snapshot proxies follow). Must be called inside
    /// a tokio runtime; the builder runs until the control plane is dropped.
    pub fn start(store: Arc<dyn Store>, options: Options) -> Arc<ControlPlane> {
        let snapshots = snapshots::start(store.clone());
        Arc::new(ControlPlane {
            store,
            options,
            snapshots,
        })
    }

    /// Serves every service over TLS with `identity` (PEM certificate chain and
    /// key) on `listener`. Runs until it fails; streams it accepted run on their
    /// own tasks (to stop everything, shut the runtime down).
    /// HTTP/2 keep-alives detect proxies that vanished without closing their
    /// stream, so their status turns to disconnected.
    pub async fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        identity: Identity,
    ) -> Result<(), tonic::transport::Error> {
        tonic::transport::Server::builder()
            .tls_config(ServerTlsConfig::new().identity(identity))?
            .http2_keepalive_interval(Some(Duration::from_secs(20)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_routes(self.routes())
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
            .await
    }

    /// The gRPC services, ready to be served (`tonic::transport::Server::builder()
    /// .add_routes(cp.routes())`).
    pub fn routes(self: &Arc<Self>) -> tonic::service::Routes {
        tonic::service::Routes::new(discovery::service(self.clone()))
            .add_service(registry::service(self.clone()))
            .add_service(operator::service(self.clone()))
    }
}
