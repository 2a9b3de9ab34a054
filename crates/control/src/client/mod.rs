//! The proxy side of the config stream. A [`ProxyClient`] holds one
//! `ConfigDiscovery.Stream` to the control plane (TLS, verified against the
//! control plane's CA; bearer token), says who it is, and for each snapshot
//! received: opens it (`snapshot::open`), applies it to its target (a
//! [`meshgate_core::Gateway`], see [`gateway`]), writes it to the last-good cache
//! ([`cache`]) and answers Ack — or Nack with the reason, and keeps serving what it
//! had. When the stream breaks it reconnects with exponential backoff and full
//! jitter ([`backoff`]); the control plane sends the current version first, so a
//! reconnected proxy catches up at once.

pub mod backoff;
pub mod cache;
pub mod gateway;

use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use meshgate_config::Config;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::proto::v1::config_discovery_client::ConfigDiscoveryClient;
use crate::proto::v1::proxy_message::Kind;
use crate::proto::v1::{Ack, Hello, Nack, ProxyIdentity, ProxyMessage, Snapshot};
use crate::snapshot;

pub use backoff::Backoff;
pub use cache::last_good;
pub use gateway::{FedGateway, Launch, Transform, start_fed, start_gateway, start_gateway_with};

/// Largest snapshot accepted (a config document plus every discovered endpoint).
const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;

/// How a proxy reaches and identifies itself to the control plane.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `https://host:port`.
    pub control: String,
    /// PEM of the CA that signed the control plane's serving certificate.
    pub ca_pem: Vec<u8>,
    /// Bearer token; its scope decides which identity may be claimed.
    pub token: String,
    pub identity: ProxyIdentity,
    /// Where `last-good.json` lives.
    pub data_dir: PathBuf,
    /// This proxy's meshgate version, shown in status.
    pub build: String,
    pub backoff: Backoff,
}

/// Why a client cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
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
    #[error("the control-plane client stopped before a config arrived")]
    Stopped,
}

/// What a proxy applies snapshots to: `Err` carries the reason sent in the Nack.
pub trait Apply: Send + Sync + 'static {
    fn apply(&self, config: Config) -> BoxFuture<'_, Result<(), String>>;
}

impl<T: Apply + ?Sized> Apply for std::sync::Arc<T> {
    fn apply(&self, config: Config) -> BoxFuture<'_, Result<(), String>> {
        (**self).apply(config)
    }
}

/// One proxy's connection to the control plane (see the module doc).
pub struct ProxyClient {
    settings: Settings,
    endpoint: Endpoint,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    /// The snapshot being served (from the cache, or the last one applied).
    serving: Option<Snapshot>,
    /// Version of the snapshot last written to the cache.
    cached: Option<String>,
    applied: watch::Sender<Option<String>>,
}

impl ProxyClient {
    pub fn new(settings: Settings) -> Result<Self, ClientError> {
        if !settings.control.starts_with("https://") {
            return Err(ClientError::NotHttps(settings.control.clone()));
        }
        let url_error = |source| ClientError::Url {
            url: settings.control.clone(),
            source,
        };
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&settings.ca_pem));
        let endpoint = Endpoint::from_shared(settings.control.clone())
            .map_err(url_error)?
            .tls_config(tls)
            .map_err(ClientError::Tls)?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // A control plane that vanished without closing the connection (host
            // down, partition) is noticed within ~30 s, then we reconnect.
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let authorization = format!("Bearer {}", settings.token)
            .parse()
            .map_err(|_| ClientError::Token)?;
        Ok(ProxyClient {
            settings,
            endpoint,
            authorization,
            serving: None,
            cached: None,
            applied: watch::channel(None).0,
        })
    }

    /// Declares what the target already serves (e.g. the last-good snapshot it
    /// started from): announced in Hello, and not applied again when the control
    /// plane sends the same content (it is acknowledged and cached).
    pub fn serving(mut self, snapshot: Snapshot) -> Self {
        self.applied.send_replace(Some(snapshot.version.clone()));
        self.serving = Some(snapshot);
        self
    }

    /// Follows the version being served (None until one is).
    pub fn applied(&self) -> watch::Receiver<Option<String>> {
        self.applied.subscribe()
    }

    /// Follows the control plane forever, applying what it sends to `target`.
    /// Abort the task running it to stop.
    pub async fn run(mut self, target: impl Apply) {
        let mut attempts = backoff::Attempts::new(self.settings.backoff);
        loop {
            match self.session(&target).await {
                Ok(delivered) => {
                    if delivered {
                        attempts.reset();
                    }
                    tracing::info!(control = %self.settings.control, "control-plane stream ended; reconnecting");
                }
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    tracing::warn!(control = %self.settings.control, error = %status.message(),
                        "control plane unreachable; serving the current config");
                }
                Err(status) => {
                    tracing::error!(control = %self.settings.control, code = ?status.code(),
                        error = %status.message(), "control plane refused the stream");
                }
            }
            tokio::time::sleep(attempts.next_delay()).await;
        }
    }

    /// One stream, until it ends. `Ok(true)` if it delivered a snapshot.
    async fn session(&mut self, target: &impl Apply) -> Result<bool, tonic::Status> {
        let channel: Channel = self
            .endpoint
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(error_chain(&e)))?;
        let mut client =
            ConfigDiscoveryClient::new(channel).max_decoding_message_size(MAX_SNAPSHOT_BYTES);
        let (replies, outgoing) = mpsc::channel(4);
        let hello = Hello {
            identity: Some(self.settings.identity.clone()),
            running: self
                .serving
                .as_ref()
                .map_or_else(String::new, |s| s.version.clone()),
            build: self.settings.build.clone(),
        };
        // Queued before the call: the server answers only after it read Hello.
        let _ = replies.try_send(message(Kind::Hello(hello)));
        let mut request = tonic::Request::new(ReceiverStream::new(outgoing));
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        let mut inbound = client.stream(request).await?.into_inner();
        tracing::info!(control = %self.settings.control, "connected to the control plane");
        let mut delivered = false;
        loop {
            let snapshot = match inbound.message().await {
                Ok(Some(s)) => s,
                Ok(None) => return Ok(delivered),
                Err(status) if delivered => {
                    tracing::info!(error = %status.message(), "control-plane stream broke");
                    return Ok(true);
                }
                Err(status) => return Err(status),
            };
            delivered = true;
            let reply = self.take(snapshot, target).await;
            if replies.send(reply).await.is_err() {
                return Ok(true);
            }
        }
    }

    /// Opens and applies one snapshot; the Ack or Nack to send.
    async fn take(&mut self, snapshot: Snapshot, target: &impl Apply) -> ProxyMessage {
        let version = snapshot.version.clone();
        if self.serving.as_ref() != Some(&snapshot) {
            let applied = match snapshot::open(&snapshot) {
                Ok(config) => target.apply(config).await,
                Err(e) => Err(e.to_string()),
            };
            if let Err(reason) = applied {
                tracing::warn!(%version, %reason, "snapshot refused (NACK); still serving {}",
                    self.serving.as_ref().map_or("nothing", |s| s.version.as_str()));
                return message(Kind::Nack(Nack { version, reason }));
            }
            tracing::info!(%version, "snapshot applied");
            self.serving = Some(snapshot);
            self.applied.send_replace(Some(version.clone()));
        }
        self.save_last_good().await;
        message(Kind::Ack(Ack { version }))
    }

    /// Writes the snapshot being served to the cache, unless it is there already.
    async fn save_last_good(&mut self) {
        let Some(serving) = &self.serving else { return };
        if self.cached.as_deref() == Some(serving.version.as_str()) {
            return;
        }
        let (dir, snapshot) = (self.settings.data_dir.clone(), serving.clone());
        let version = snapshot.version.clone();
        let written = tokio::task::spawn_blocking(move || cache::save(&dir, &snapshot)).await;
        match written {
            Ok(Ok(())) => self.cached = Some(version),
            Ok(Err(e)) => tracing::error!(error = %e, dir = %self.settings.data_dir.display(),
                "cannot write the last-good snapshot"),
            Err(e) => tracing::error!(error = %e, "cannot write the last-good snapshot"),
        }
    }
}

fn message(kind: Kind) -> ProxyMessage {
    ProxyMessage { kind: Some(kind) }
}

/// An error with its causes: tonic's transport errors say little on their own.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
