//! The control-plane gRPC server: one [`ControlPlane`] per process, serving
//! config discovery to proxies ([`discovery`]), the service registry
//! ([`registry`]) and the operator API ([`operator`]) on one (TLS) port, all
//! reading and writing the same [`Store`].

pub mod auth;
pub mod discovery;
pub mod operator;
pub mod registry;

use std::sync::Arc;

use tokio::sync::watch;

use crate::proto::v1::Snapshot;
use crate::store::Store;

pub use auth::{Scope, Token, Tokens};

/// Settings of a control-plane process.
#[derive(Debug, Clone)]
pub struct Options {
    /// This replica's name (shown in status next to the proxies it holds).
    pub replica: String,
    pub tokens: Tokens,
}

/// The control plane's shared state; cheap to clone behind an `Arc`.
pub struct ControlPlane {
    pub store: Arc<dyn Store>,
    pub options: Options,
    /// The latest snapshot for gateways (None until a config is applied).
    pub snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
}

impl ControlPlane {
    /// The gRPC services, ready to be served (`tonic::transport::Server::builder()
    /// .add_routes(cp.routes())`).
    pub fn routes(self: &Arc<Self>) -> tonic::service::Routes {
        tonic::service::Routes::new(discovery::service(self.clone()))
            .add_service(registry::service(self.clone()))
            .add_service(operator::service(self.clone()))
    }
}
