//! Mesh ingress: a gateway fed by the control plane that also joins the mesh
//! (`meshgate gateway --control … --mesh`). North-south traffic arrives on the
//! gateway's own listeners with its edge policies; routes to mesh services
//! (`services[].mesh.spiffeId`, endpoints from `discovery: {registry: {}}`, where
//! sidecars register their inbound address) continue east-west over mTLS with the
//! gateway's mesh identity, `spiffe://<td>/ns/<ns>/sa/gateway`.
//!
//! Starting one first obtains that identity ([`IdentityClient`] with the gateway
//! token: gateway tokens may only hold `sa/gateway`, see `ca::service`), then
//! follows the control plane as a `gateway` proxy (`client::start_fed`:
//! last-good cache, node-local [`Transform`], latest wins) with that identity, so
//! configs using `mesh` apply.

use std::sync::Arc;

use meshgate_control::client::{ClientError, FedGateway, Launch, Settings, Transform, start_fed};
use meshgate_core::filter::PolicyCompiler;
use meshgate_core::identity::WorkloadIdentity;

use crate::identity_client::{IdentityClient, IdentityClientError, IdentitySettings};

/// The service name of every gateway's mesh identity.
pub const GATEWAY_SERVICE: &str = "gateway";

/// Why a mesh gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("mesh identity: {0}")]
    Identity(#[from] IdentityClientError),
    #[error("control plane: {0}")]
    Client(#[from] ClientError),
}

/// A running gateway in the mesh; dropping it stops the control-plane client and
/// the identity renewal (the gateway lives as long as its `Arc`).
pub struct MeshGateway {
    /// The gateway and the client feeding it.
    pub fed: FedGateway,
    identity: IdentityClient,
}

impl MeshGateway {
    /// The gateway's mesh identity (rotated in place).
    pub fn identity(&self) -> Arc<WorkloadIdentity> {
        self.identity.identity()
    }

    /// Stops following the control plane and drains the gateway.
    pub async fn shutdown(self) {
        self.fed.shutdown().await;
    }
}

/// Starts a mesh gateway: `settings` is the gateway's control-plane connection
/// (role `gateway`, its token also signs the identity), `namespace` the `ns` of
/// its SPIFFE ID ("" = `default`). Waits for the identity and the first config
/// that starts; wrap it in a timeout to give up.
pub async fn start(
    settings: Settings,
    namespace: &str,
    compiler: Arc<dyn PolicyCompiler>,
    transform: Transform,
) -> Result<MeshGateway, IngressError> {
    let identity = IdentityClient::start(IdentitySettings {
        control: settings.control.clone(),
        ca_pem: settings.ca_pem.clone(),
        token: settings.token.clone(),
        service: GATEWAY_SERVICE.into(),
        namespace: namespace.into(),
        ttl: None,
        backoff: settings.backoff,
    })
    .await?;
    let launch = Launch {
        compiler,
        transform,
        identity: Some(identity.identity()),
    };
    let fed = start_fed(settings, launch).await?;
    Ok(MeshGateway { fed, identity })
}
