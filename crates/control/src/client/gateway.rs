//! A gateway fed by the control plane (`meshgate gateway --control …`). It starts
//! from the last-good cache when there is one — so it serves even while the
//! control plane is unreachable — and otherwise from the first snapshot it
//! receives (a gateway needs a config to start: its listeners, access log and
//! tracing come from it). Either way it then follows the control plane.
//! [`start_fed`] rewrites each config first with a node-local [`Transform`]
//! (`meshgate gateway --listen/--admin`, a sidecar's ports) and may give the
//! gateway a mesh identity: the control-plane gateway, the sidecar and the mesh
//! ingress all start this way.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use meshgate_config::Config;
use meshgate_core::Gateway;
use meshgate_core::filter::PolicyCompiler;
use meshgate_core::identity::WorkloadIdentity;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use super::{Apply, ClientError, ProxyClient, Settings, cache};

impl Apply for Gateway {
    fn apply(&self, config: Config) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            Gateway::apply(self, config)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// A running gateway and the client feeding it. Dropping it stops the client;
/// the gateway lives as long as its `Arc`.
pub struct FedGateway {
    pub gateway: Arc<Gateway>,
    /// The snapshot version being served.
    pub applied: watch::Receiver<Option<String>>,
    client: JoinHandle<()>,
}

impl FedGateway {
    /// Stops following the control plane and drains the gateway.
    pub async fn shutdown(self) {
        self.client.abort();
        self.gateway.shutdown().await;
    }
}

impl Drop for FedGateway {
    fn drop(&mut self) {
        self.client.abort();
    }
}

/// A node-local change made to every config before it is applied (e.g. `meshgate
/// gateway --listen NAME=ADDR`, or a sidecar's ports): every proxy of a fleet
/// receives the same document, so what must differ per node is rewritten here.
/// An error refuses (NACKs) the config.
pub type Transform = Arc<dyn Fn(&mut Config) -> Result<(), String> + Send + Sync>;

/// How a fed gateway is started: its policies, the node's [`Transform`], and the
/// mesh identity it speaks mTLS with when it is in the mesh (sidecars, mesh
/// ingress).
pub struct Launch {
    pub compiler: Arc<dyn PolicyCompiler>,
    pub transform: Transform,
    pub identity: Option<Arc<WorkloadIdentity>>,
}

impl Launch {
    /// No transform, no identity.
    pub fn plain(compiler: Arc<dyn PolicyCompiler>) -> Launch {
        Launch {
            compiler,
            transform: Arc::new(|_: &mut Config| Ok(())),
            identity: None,
        }
    }
}

/// Starts a gateway from the last-good cache in `settings.data_dir`, or else from
/// the first snapshot that starts (those that do not are NACKed), and keeps it
/// following the control plane. Waits as long as it takes for that first
/// snapshot; wrap it in a timeout (or a `select!`) to give up — dropping the
/// future stops the client.
pub async fn start_gateway(
    settings: Settings,
    compiler: Arc<dyn PolicyCompiler>,
) -> Result<FedGateway, ClientError> {
    start_fed(settings, Launch::plain(compiler)).await
}

/// [`start_gateway`], with `transform` applied to every config first.
pub async fn start_gateway_with(
    settings: Settings,
    compiler: Arc<dyn PolicyCompiler>,
    transform: Transform,
) -> Result<FedGateway, ClientError> {
    let launch = Launch {
        transform,
        ..Launch::plain(compiler)
    };
    start_fed(settings, launch).await
}

/// [`start_gateway`] as `launch` says: the transform is applied to every config
/// (the cached one and each snapshot) before the gateway sees it; what is cached
/// and reported is the snapshot as received, so the control plane's versions
/// stay the same on every node.
pub async fn start_fed(settings: Settings, launch: Launch) -> Result<FedGateway, ClientError> {
    let mut client = ProxyClient::new(settings)?;
    let slot = Arc::new(GatewaySlot {
        launch,
        gateway: Mutex::new(None),
        started: watch::channel(None).0,
    });
    let data_dir = client.settings.data_dir.clone();
    match cache::last_good(&data_dir) {
        Some((snapshot, config)) => match slot.apply(config).await {
            Ok(()) => {
                tracing::info!(version = %snapshot.version, "started from the last-good snapshot");
                client = client.serving(snapshot);
            }
            Err(e) => tracing::warn!(version = %snapshot.version, error = %e,
                "cannot start from the last-good snapshot; waiting for the control plane"),
        },
        None => tracing::info!(dir = %data_dir.display(),
            "no last-good snapshot; waiting for the control plane"),
    }
    let applied = client.applied();
    let mut started = slot.started.subscribe();
    // Aborted if this future is dropped before the first config arrives.
    let mut client = AbortOnDrop(Some(tokio::spawn(client.run(slot.clone()))));
    let gateway = match started.wait_for(Option::is_some).await {
        Ok(g) => g.clone(),
        Err(_) => None,
    };
    let (Some(gateway), Some(client)) = (gateway, client.0.take()) else {
        return Err(ClientError::Stopped);
    };
    Ok(FedGateway {
        gateway,
        applied,
        client,
    })
}

/// Aborts the task it holds when dropped.
struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Starts the gateway with the first config it is given, applies later ones
/// (each after the node's transform).
struct GatewaySlot {
    launch: Launch,
    gateway: Mutex<Option<Arc<Gateway>>>,
    started: watch::Sender<Option<Arc<Gateway>>>,
}

impl Apply for GatewaySlot {
    fn apply(&self, config: Config) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut config = config;
            (self.launch.transform)(&mut config)?;
            let mut gateway = self.gateway.lock().await;
            if let Some(g) = &*gateway {
                return Gateway::apply(g, config).await.map_err(|e| e.to_string());
            }
            let Launch {
                compiler, identity, ..
            } = &self.launch;
            let g = Gateway::launch(config, compiler.clone(), identity.clone())
                .await
                .map_err(|e| e.to_string())?;
            let g = Arc::new(g);
            *gateway = Some(g.clone());
            self.started.send_replace(Some(g));
            Ok(())
        })
    }
}
