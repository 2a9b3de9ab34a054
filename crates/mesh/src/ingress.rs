//! Mesh ingress: a gateway fed by the control plane that also joins the mesh
//! (`meshgate gateway --control … --mesh`). North-south traffic arrives on the
//! gateway's own listeners with its edge policies; routes to mesh services
//! (`services[].mesh.spiffeId`, endpoints from `discovery: {registry: {}}`, where
//! sidecars register their inbound address) continue east-west over mTLS with the
//! gateway's mesh identity, `spiffe://<td>/ns/<ns>/sa/gateway`.
//!
//! Starting one first obtains that identity ([`IdentityClient`] with the gateway
//! token: gateway tokens may only hold `sa/gateway`, see `ca::service`), then
//! follows the control plane as a `gateway` proxy exactly like
//! `meshgate_control::client::start_gateway_with` (last-good cache, node-local
//! [`Transform`], latest wins), except that the gateway is started with the
//! identity (`Gateway::start_with_identity`) so configs using `mesh` apply.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use meshgate_config::Config;
use meshgate_control::client::{Apply, ClientError, ProxyClient, Settings, Transform, last_good};
use meshgate_core::Gateway;
use meshgate_core::access_log::AccessLog;
use meshgate_core::filter::PolicyCompiler;
use meshgate_core::identity::WorkloadIdentity;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

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
    pub gateway: Arc<Gateway>,
    /// The snapshot version being served.
    pub applied: watch::Receiver<Option<String>>,
    identity: IdentityClient,
    client: JoinHandle<()>,
}

impl MeshGateway {
    /// The gateway's mesh identity (rotated in place).
    pub fn identity(&self) -> Arc<WorkloadIdentity> {
        self.identity.identity()
    }

    /// Stops following the control plane and drains the gateway.
    pub async fn shutdown(self) {
        self.client.abort();
        self.gateway.shutdown().await;
    }
}

impl Drop for MeshGateway {
    fn drop(&mut self) {
        self.client.abort();
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
    let data_dir = settings.data_dir.clone();
    let mut client = ProxyClient::new(settings)?;
    let target = Arc::new(Target {
        compiler,
        transform,
        identity: identity.identity(),
        gateway: Mutex::new(None),
        started: watch::channel(None).0,
    });
    if let Some((snapshot, config)) = last_good(&data_dir) {
        match target.apply(config).await {
            Ok(()) => {
                tracing::info!(version = %snapshot.version, "started from the last-good snapshot");
                client = client.serving(snapshot);
            }
            Err(e) => tracing::warn!(version = %snapshot.version, error = %e,
                "cannot start from the last-good snapshot; waiting for the control plane"),
        }
    }
    let applied = client.applied();
    let mut started = target.started.subscribe();
    let mut task = AbortOnDrop(Some(tokio::spawn(client.run(target.clone()))));
    let gateway = match started.wait_for(Option::is_some).await {
        Ok(g) => g.clone(),
        Err(_) => None,
    };
    let (Some(gateway), Some(client)) = (gateway, task.0.take()) else {
        return Err(ClientError::Stopped.into());
    };
    Ok(MeshGateway {
        gateway,
        applied,
        identity,
        client,
    })
}

/// Aborts the task it holds when dropped (the start future was given up).
struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Starts the gateway, with the identity, from the first config; applies later
/// ones (each after the node's transform).
struct Target {
    compiler: Arc<dyn PolicyCompiler>,
    transform: Transform,
    identity: Arc<WorkloadIdentity>,
    gateway: Mutex<Option<Arc<Gateway>>>,
    started: watch::Sender<Option<Arc<Gateway>>>,
}

impl Apply for Target {
    fn apply(&self, config: Config) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut config = config;
            (self.transform)(&mut config);
            let mut gateway = self.gateway.lock().await;
            if let Some(g) = &*gateway {
                return Gateway::apply(g, config).await.map_err(|e| e.to_string());
            }
            let log = AccessLog::open(&config.access_log.path)
                .map_err(|e| format!("access log {}: {e}", config.access_log.path))?;
            let g = Gateway::start_with_identity(
                config,
                log,
                self.compiler.clone(),
                Some(self.identity.clone()),
            )
            .await
            .map_err(|e| e.to_string())?;
            let g = Arc::new(g);
            *gateway = Some(g.clone());
            self.started.send_replace(Some(g));
            Ok(())
        })
    }
}
