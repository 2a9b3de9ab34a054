//! The instance side of the service registry: a [`Registrar`] registers one
//! service instance with the control plane (TLS, verified against its CA; bearer
//! token of registrar scope), renews the lease every third of its TTL, registers
//! again when a heartbeat hears NOT_FOUND (the lease expired, e.g. the control
//! plane restarted and forgot it, or heartbeats could not get through in time),
//! and deregisters on shutdown ([`Registrar::deregister`], with drain: the instance
//! finishes what it has and gets no new requests).
//!
//! Dropping a `Registrar` without deregistering stops the heartbeats: the instance
//! leaves the registry when its lease runs out, as a crashed one would.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use crate::client::Backoff;
use crate::client::backoff::Attempts;
use crate::proto::v1::registry_client::RegistryClient;
use crate::proto::v1::{Deregistration, LeaseRef, Registration};

/// Shortest heartbeat interval, whatever the TTL.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// Why a registrar cannot start or deregister.
#[derive(Debug, thiserror::Error)]
pub enum RegistrarError {
    #[error("control-plane URL {0:?} must start with https://")]
    NotHttps(String),
    #[error("control-plane URL {url:?}: {source}")]
    Url {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("control-plane CA: {0}")]
    Tls(tonic::transport::Error),
    #[error("token: not a valid header value")]
    Token,
    /// The control plane refused the registration for good (bad token, service
    /// not allowed, invalid registration): retrying cannot help.
    #[error("registration refused: {}: {}", .0.code(), .0.message())]
    Refused(Status),
    #[error("deregistration failed: {}: {}", .0.code(), .0.message())]
    Deregister(Status),
}

/// A registered instance, kept registered until dropped or deregistered.
pub struct Registrar {
    rpc: Rpc,
    lease: watch::Receiver<Option<String>>,
    task: JoinHandle<()>,
}

/// What every call needs: the channel, the token and the registration.
#[derive(Clone)]
struct Rpc {
    client: RegistryClient<Channel>,
    authorization: MetadataValue<Ascii>,
    registration: Registration,
}

impl Rpc {
    fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        r.metadata_mut()
            .insert("authorization", self.authorization.clone());
        r
    }

    async fn register(&mut self) -> Result<String, Status> {
        let r = self.request(self.registration.clone());
        Ok(self.client.register(r).await?.into_inner().id)
    }

    async fn heartbeat(&mut self, id: &str) -> Result<(), Status> {
        let r = self.request(LeaseRef { id: id.to_owned() });
        self.client.heartbeat(r).await.map(drop)
    }
}

/// Errors retrying cannot fix.
fn is_permanent(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument
    )
}

impl Registrar {
    /// Registers `registration` with the control plane at `control`
    /// (`https://host:port`, its CA certificate as PEM in `ca_pem`) using `token`,
    /// and keeps it registered in the background. Fails at once if the control
    /// plane refuses the registration for good; if it is unreachable, registering
    /// goes on in the background (with backoff) until it answers.
    pub async fn start(
        control: &str,
        ca_pem: &[u8],
        token: &str,
        registration: Registration,
    ) -> Result<Registrar, RegistrarError> {
        if !control.starts_with("https://") {
            return Err(RegistrarError::NotHttps(control.to_owned()));
        }
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
        let channel = Endpoint::from_shared(control.to_owned())
            .map_err(|source| RegistrarError::Url {
                url: control.to_owned(),
                source,
            })?
            .tls_config(tls)
            .map_err(RegistrarError::Tls)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        let authorization = format!("Bearer {token}")
            .parse()
            .map_err(|_| RegistrarError::Token)?;
        let mut rpc = Rpc {
            client: RegistryClient::new(channel),
            authorization,
            registration,
        };
        let first = match rpc.register().await {
            Ok(id) => Some(id),
            Err(s) if is_permanent(&s) => return Err(RegistrarError::Refused(s)),
            Err(s) => {
                tracing::warn!(service = %rpc.registration.service, error = %s, "cannot register yet; retrying");
                None
            }
        };
        let (lease_tx, lease) = watch::channel(first);
        let task = tokio::spawn(keep_registered(rpc.clone(), lease_tx));
        Ok(Registrar { rpc, lease, task })
    }

    /// The current lease id (None while not registered).
    pub fn lease(&self) -> Option<String> {
        self.lease.borrow().clone()
    }

    /// Follows the lease id: changes when the instance registers again.
    pub fn leases(&self) -> watch::Receiver<Option<String>> {
        self.lease.clone()
    }

    /// Stops heartbeating and deregisters: at once, or (`drain`) keeping the
    /// instance known but sent no new requests until its lease runs out. A lease
    /// that already expired is not an error.
    pub async fn deregister(mut self, drain: bool) -> Result<(), RegistrarError> {
        self.task.abort();
        let Some(id) = self.lease() else {
            return Ok(());
        };
        let r = self.rpc.request(Deregistration { id, drain });
        match self.rpc.client.deregister(r).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(RegistrarError::Deregister(s)),
        }
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Heartbeats every third of the TTL; registers again when the lease is gone.
async fn keep_registered(mut rpc: Rpc, lease: watch::Sender<Option<String>>) {
    let ttl = Duration::from_secs(u64::from(rpc.registration.ttl_seconds));
    let interval = (ttl / 3).max(MIN_HEARTBEAT);
    let mut attempts = Attempts::new(Backoff::default());
    let service = rpc.registration.service.clone();
    loop {
        let current = lease.borrow().clone();
        let Some(id) = current else {
            match rpc.register().await {
                Ok(id) => {
                    tracing::info!(%service, lease = %id, "registered");
                    attempts.reset();
                    lease.send_replace(Some(id));
                    continue;
                }
                Err(s) => {
                    // Permanent refusals are logged louder, but still retried: the
                    // operator may fix the token or the control plane's config.
                    if is_permanent(&s) {
                        tracing::error!(%service, error = %s, "registration refused");
                    } else {
                        tracing::warn!(%service, error = %s, "registration failed");
                    }
                    tokio::time::sleep(attempts.next_delay()).await;
                    continue;
                }
            }
        };
        tokio::time::sleep(interval).await;
        match rpc.heartbeat(&id).await {
            Ok(()) => {}
            Err(s) if s.code() == Code::NotFound => {
                tracing::info!(%service, lease = %id, "lease expired; registering again");
                lease.send_replace(None);
            }
            // The lease may still be alive: try again at the next interval.
            Err(s) => tracing::warn!(%service, lease = %id, error = %s, "heartbeat failed"),
        }
    }
}
