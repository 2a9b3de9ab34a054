//! ConfigDiscovery: the stream each proxy holds. The caller's bearer token decides
//! which identity it may claim; its first message must be a Hello with that
//! identity. It then receives the current snapshot at once and each newer one
//! after it. The stream follows the control plane's snapshot `watch`, so nothing
//! queues for a slow proxy: when it reads again it gets the newest version, and
//! it never delays anyone else. Acks and Nacks are recorded in the store (what
//! `meshgate status` shows); the end of the stream records the proxy as
//! disconnected. Snapshots sent and answers received are counted
//! ([`super::metrics`]); when the server stops, every stream ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use super::ControlPlane;
use crate::proto::v1::proxy_message::Kind;
use crate::proto::v1::{Hello, ProxyMessage, Snapshot};
use crate::proto::wire::config_discovery_server::{ConfigDiscovery, ConfigDiscoveryServer};
use crate::snapshot::EncodedSnapshot;
use crate::store::{ProxyRecord, now_ms};

/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub fn service(cp: Arc<ControlPlane>) -> ConfigDiscoveryServer<Discovery> {
    ConfigDiscoveryServer::new(Discovery {
        cp,
        sessions: Arc::default(),
    })
}

pub struct Discovery {
    cp: Arc<ControlPlane>,
    sessions: Arc<Sessions>,
}

/// The newest stream of each proxy on this replica: a stream that ends after its
/// proxy has reconnected must not mark it disconnected.
#[derive(Default)]
struct Sessions {
    next: AtomicU64,
    newest: Mutex<HashMap<String, u64>>,
}

impl Sessions {
    fn begin(&self, key: &str) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(key.to_owned(), id);
        id
    }

    /// Whether `id` was still the newest stream of `key` (it is forgotten).
    fn end(&self, key: &str, id: u64) -> bool {
        let mut newest = self.lock();
        if newest.get(key) == Some(&id) {
            newest.remove(key);
            true
        } else {
            false
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.newest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type SnapshotStream = std::pin::Pin<Box<dyn Stream<Item = Result<EncodedSnapshot, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigDiscovery for Discovery {
    type StreamStream = SnapshotStream;

    async fn stream(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let token = self.cp.options.tokens.check(&request)?;
        let (token_name, scope) = (token.name.clone(), token.scope.clone());
        let peer = request
            .remote_addr()
            .map_or_else(String::new, |a| a.to_string());
        let mut inbound = request.into_inner();
        let hello = first_hello(&mut inbound).await?;
        let identity = hello.identity.clone().unwrap_or_default();
        if identity.node_id.is_empty() {
            return Err(Status::invalid_argument("Hello without identity.node_id"));
        }
        if !scope.allows_proxy(&identity.role, &identity.service) {
            tracing::warn!(token = %token_name, role = %identity.role, node = %identity.node_id,
                service = %identity.service, %peer, "proxy identity not allowed by its token");
            return Err(Status::permission_denied(format!(
                "token {token_name:?} may not act as {} {:?} (service {:?})",
                identity.role, identity.node_id, identity.service
            )));
        }
        // Gateways follow the shared snapshot; each sidecar its generated one.
        let snapshots = match identity.role.as_str() {
            "gateway" => self.cp.snapshots.clone(),
            "sidecar" => {
                crate::sidecar::snapshots(&self.cp, &identity.service, &identity.namespace)?
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown role {other:?} (gateway or sidecar)"
                )));
            }
        };
        tracing::info!(node = %identity.node_id, role = %identity.role, running = %hello.running,
            %peer, "proxy connected");
        let record = ProxyRecord {
            role: identity.role,
            node_id: identity.node_id,
            service: identity.service,
            namespace: identity.namespace,
            connected: true,
            acked_config: config_version_of(&hello.running),
            acked: hello.running,
            nacked: String::new(),
            nacked_config: 0,
            nack_reason: String::new(),
            desired: String::new(),
            last_seen_ms: now_ms(),
            build: hello.build,
            replica: self.cp.options.replica.clone(),
        };
        let (sent_tx, sent_rx) = watch::channel(None);
        let session = self.sessions.begin(&record.key());
        tokio::spawn(follow_replies(
            self.cp.clone(),
            self.sessions.clone(),
            session,
            inbound,
            sent_rx,
            record,
        ));
        let outbound = outbound(self.cp.clone(), snapshots, sent_tx);
        Ok(Response::new(Box::pin(outbound)))
    }
}

async fn first_hello(inbound: &mut Streaming<ProxyMessage>) -> Result<Hello, Status> {
    match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no Hello within {HELLO_TIMEOUT:?}"
        ))),
        Ok(Err(status)) => Err(status),
        Ok(Ok(Some(ProxyMessage {
            kind: Some(Kind::Hello(hello)),
        }))) => Ok(hello),
        Ok(Ok(_)) => Err(Status::invalid_argument("the first message must be Hello")),
    }
}

/// The snapshots sent to one proxy: the current one, then each newer one when
/// the proxy can take it (tonic polls this only when the stream has room, so the
/// versions a slow proxy missed are skipped, not queued). Notes each version sent
/// in `sent`, and ends when the session following the replies ends or the server
/// stops.
fn outbound(
    cp: Arc<ControlPlane>,
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    sent: watch::Sender<Option<String>>,
) -> impl Stream<Item = Result<EncodedSnapshot, Status>> + Send + 'static {
    let stopping = cp.stopping();
    futures_util::stream::unfold(
        (cp, snapshots, stopping, sent, true),
        |(cp, mut snapshots, mut stopping, sent, mut first)| async move {
            loop {
                if *stopping.borrow_and_update() {
                    return None;
                }
                if !first {
                    tokio::select! {
                        changed = snapshots.changed() => changed.ok()?,
                        _ = sent.closed() => return None,
                        _ = stopping.changed() => continue,
                    }
                }
                first = false;
                let latest = snapshots.borrow_and_update().clone();
                if let Some(snapshot) = latest {
                    sent.send_replace(Some(snapshot.version.clone()));
                    cp.metrics.snapshot_sent();
                    // Encoded once for all streams, not cloned and encoded per stream.
                    let encoded = cp.encoded.get(&snapshot);
                    let next = (cp, snapshots, stopping, sent, false);
                    return Some((Ok(encoded), next));
                }
            }
        },
    )
}

/// Reads one proxy's Acks and Nacks and records them (and each version sent) in
/// the store until the stream ends, then records the proxy as disconnected.
async fn follow_replies(
    cp: Arc<ControlPlane>,
    sessions: Arc<Sessions>,
    session: u64,
    mut inbound: Streaming<ProxyMessage>,
    mut sent: watch::Receiver<Option<String>>,
    mut record: ProxyRecord,
) {
    report(&cp, &record).await;
    loop {
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(message)) => on_message(&cp, &mut record, message),
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(node = %record.node_id, %status, "proxy stream failed");
                    break;
                }
            },
            changed = sent.changed() => {
                if changed.is_err() {
                    break;
                }
                let Some(version) = sent.borrow_and_update().clone() else { continue };
                record.desired = version;
            }
        }
        record.last_seen_ms = now_ms();
        report(&cp, &record).await;
    }
    tracing::info!(node = %record.node_id, role = %record.role, acked = %record.acked,
        "proxy disconnected");
    if sessions.end(&record.key(), session) {
        record.connected = false;
        record.last_seen_ms = now_ms();
        report(&cp, &record).await;
    }
}

fn on_message(cp: &ControlPlane, record: &mut ProxyRecord, message: ProxyMessage) {
    match message.kind {
        Some(Kind::Ack(ack)) => {
            cp.metrics.answer(true);
            tracing::debug!(node = %record.node_id, version = %ack.version, "ACK");
            record.acked_config = config_version_of(&ack.version);
            record.acked = ack.version;
        }
        Some(Kind::Nack(nack)) => {
            cp.metrics.answer(false);
            tracing::warn!(node = %record.node_id, role = %record.role, version = %nack.version,
                reason = %nack.reason, "proxy rejected snapshot (NACK)");
            record.nacked_config = config_version_of(&nack.version);
            record.nacked = nack.version;
            record.nack_reason = nack.reason;
        }
        Some(Kind::Hello(_)) | None => {
            tracing::debug!(node = %record.node_id, "ignoring a repeated Hello or empty message");
        }
    }
}

async fn report(cp: &ControlPlane, record: &ProxyRecord) {
    if let Err(e) = cp.store.report(record.clone()).await {
        tracing::warn!(node = %record.node_id, error = %e, "cannot record proxy status");
    }
}

/// The config version of a snapshot version `<config>-<hash>` (0 if none).
fn config_version_of(snapshot_version: &str) -> u64 {
    snapshot_version
        .split('-')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_version_is_the_prefix() {
        assert_eq!(config_version_of("12-0a0b0c0d"), 12);
        assert_eq!(config_version_of(""), 0);
        assert_eq!(config_version_of("junk"), 0);
    }

    #[test]
    fn only_the_newest_session_marks_a_proxy_disconnected() {
        let sessions = Sessions::default();
        let old = sessions.begin("gateway/a");
        let new = sessions.begin("gateway/a");
        assert!(!sessions.end("gateway/a", old));
        assert!(sessions.end("gateway/a", new));
    }
}
