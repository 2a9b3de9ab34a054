//! The sidecar: a meshgate gateway beside one workload, with that workload's mesh
//! identity, fed by the control plane with a config generated for its service
//! (`meshgate_control::sidecar`). Starting one:
//!
//! 1. obtains the workload identity ([`IdentityClient`]: key generated here, CSR
//!    signed by the control plane's CA, renewed at half-life);
//! 2. follows the control plane as a `sidecar` proxy ([`ProxyClient`]), starting
//!    from the last-good snapshot in its data dir when there is one; each config
//!    is moved to this sidecar's ports ([`localize`]) and node-local overrides
//!    (access log, admin API) before the gateway applies it, and the gateway
//!    speaks mTLS with the identity (`Gateway::start_with_identity`);
//! 3. once it serves, registers its inbound address under its service's name
//!    ([`Registrar`], TTL lease) so other sidecars' configs list it.
//!
//! [`Sidecar::shutdown`] deregisters with drain first (peers stop choosing it),
//! then drains the gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshgate_config::Config;
use meshgate_control::client::{Backoff, ClientError, FedGateway, Launch, Settings, start_fed};
use meshgate_control::proto::v1::{ProxyIdentity, Registration};
use meshgate_control::registrar::{Registrar, RegistrarError};
use meshgate_control::sidecar::{Ports, localize};
use meshgate_core::Gateway;
use meshgate_core::filter::PolicyCompiler;
use meshgate_core::identity::WorkloadIdentity;
use tokio::sync::watch;

use crate::identity_client::{IdentityClient, IdentityClientError, IdentitySettings};

/// Everything a sidecar needs to know about itself.
#[derive(Debug, Clone)]
pub struct SidecarSettings {
    /// `https://host:port` of the control plane.
    pub control: String,
    /// PEM of the CA that signed the control plane's serving certificate.
    pub control_ca_pem: Vec<u8>,
    /// Sidecar-scope token (config stream and certificate signing).
    pub token: String,
    /// Registrar-scope token for registering the inbound address; None: the
    /// sidecar does not register (its address must reach the registry otherwise).
    pub registrar_token: Option<String>,
    pub service: String,
    /// `default` unless set.
    pub namespace: String,
    /// This sidecar's name in `meshgate status` and its registry instance name.
    pub node_id: String,
    pub ports: Ports,
    /// `host:port` other sidecars reach the inbound port at.
    pub advertise: String,
    /// Where `last-good.json` lives.
    pub data_dir: PathBuf,
    /// Access log path instead of the generated config's (stdout).
    pub access_log: Option<String>,
    /// Admin API address; None: off (the generated config's default).
    pub admin: Option<SocketAddr>,
    /// Lease of the registration; heartbeats every third of it.
    pub registration_ttl: Duration,
    /// Certificate lifetime to ask for (None: the CA's default).
    pub certificate_ttl: Option<Duration>,
    pub backoff: Backoff,
    /// meshgate version, shown in status.
    pub build: String,
}

/// Why a sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("mesh identity: {0}")]
    Identity(#[from] IdentityClientError),
    #[error("control plane: {0}")]
    Client(#[from] ClientError),
    #[error("registry: {0}")]
    Registrar(#[from] RegistrarError),
}

/// A running sidecar.
pub struct Sidecar {
    fed: FedGateway,
    identity: IdentityClient,
    registrar: Option<Registrar>,
}

impl Sidecar {
    /// Starts a sidecar (see the module doc). Waits for the identity and for a
    /// first config that starts (those that do not are NACKed); wrap it in a
    /// timeout to give up — dropping the future stops everything.
    pub async fn start(
        settings: SidecarSettings,
        compiler: Arc<dyn PolicyCompiler>,
    ) -> Result<Sidecar, SidecarError> {
        let identity = IdentityClient::start(IdentitySettings {
            control: settings.control.clone(),
            ca_pem: settings.control_ca_pem.clone(),
            token: settings.token.clone(),
            service: settings.service.clone(),
            namespace: settings.namespace.clone(),
            ttl: settings.certificate_ttl,
            backoff: settings.backoff,
        })
        .await?;
        let client = Settings {
            control: settings.control.clone(),
            ca_pem: settings.control_ca_pem.clone(),
            token: settings.token.clone(),
            identity: ProxyIdentity {
                role: "sidecar".into(),
                node_id: settings.node_id.clone(),
                service: settings.service.clone(),
                namespace: settings.namespace.clone(),
            },
            data_dir: settings.data_dir.clone(),
            build: settings.build.clone(),
            backoff: settings.backoff,
        };
        let local = settings.clone();
        let launch = Launch {
            compiler,
            transform: Arc::new(move |config: &mut Config| local.localize(config)),
            identity: Some(identity.identity()),
        };
        let fed = start_fed(client, launch).await?;
        let registrar = match &settings.registrar_token {
            Some(token) => match register(&settings, token).await {
                Ok(r) => Some(r),
                Err(e) => {
                    fed.shutdown().await;
                    return Err(e.into());
                }
            },
            None => {
                tracing::warn!(
                    "no registrar token: this sidecar is not registered, other sidecars will not send it traffic"
                );
                None
            }
        };
        Ok(Sidecar {
            fed,
            identity,
            registrar,
        })
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.fed.gateway
    }

    /// The workload identity (rotated in place).
    pub fn identity(&self) -> Arc<WorkloadIdentity> {
        self.identity.identity()
    }

    /// Follows the snapshot version being served.
    pub fn applied(&self) -> watch::Receiver<Option<String>> {
        self.fed.applied.clone()
    }

    /// Deregisters (with drain: peers stop choosing this sidecar once their configs
    /// update, requests in flight finish), stops following the control plane and
    /// drains the gateway.
    pub async fn shutdown(self) {
        if let Some(r) = self.registrar
            && let Err(e) = r.deregister(true).await
        {
            tracing::warn!(error = %e, "cannot deregister; the lease will expire");
        }
        self.fed.shutdown().await;
    }
}

async fn register(settings: &SidecarSettings, token: &str) -> Result<Registrar, RegistrarError> {
    let registration = Registration {
        service: settings.service.clone(),
        instance: settings.node_id.clone(),
        address: settings.advertise.clone(),
        weight: 1,
        ttl_seconds: settings.registration_ttl.as_secs().clamp(1, 300) as u32,
    };
    let r = Registrar::start(
        &settings.control,
        &settings.control_ca_pem,
        token,
        registration,
    )
    .await?;
    tracing::info!(service = %settings.service, address = %settings.advertise, "registered the inbound address");
    Ok(r)
}

impl SidecarSettings {
    /// Moves a generated config to this sidecar's ports and node-local overrides.
    fn localize(&self, config: &mut Config) -> Result<(), String> {
        localize(config, &self.ports).map_err(|e| e.to_string())?;
        if let Some(path) = &self.access_log {
            config.access_log.path = path.clone();
        }
        if let Some(addr) = self.admin {
            config.admin.enabled = true;
            config.admin.address = addr;
        }
        Ok(())
    }
}
