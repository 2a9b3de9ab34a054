//! The etcd store: several control-plane replicas share one etcd cluster (v3 API
//! over gRPC, spoken through the generated client in [`crate::proto::etcd`]) and
//! stay consistent through it; a change made through any replica reaches the
//! proxies of every replica through etcd watches.
//!
//! # Key layout (under a prefix, e.g. `/meshgate`)
//!
//! | key | value |
//! |---|---|
//! | `<prefix>/config/current` | the current config version, decimal |
//! | `<prefix>/config/versions/<version, 20 digits>` | the revision as JSON (plus `committed_by`, `commit_id`) |
//! | `<prefix>/registry/<service>/<instance>` | the [`Instance`] as JSON, on the instance's own lease |
//! | `<prefix>/proxies/<role>/<node id>` | the [`ProxyRecord`] as JSON, on the writing replica's session lease |
//!
//! # Consistency
//!
//! - A commit is one etcd transaction: compare `current` with the expected version
//!   (absent for 0), then put the version, move `current` and delete the versions
//!   beyond the kept history — or, on a mismatch, read `current` back for the
//!   `Conflict`. Of concurrent commits with the same expectation exactly one wins.
//! - [`Store::config`] and [`Store::registry`] follow etcd watches (initial read,
//!   then events from the revision after it; see `follow.rs`). A replica sees its
//!   own commit at once; other replicas within a watch round trip. Published
//!   config never goes back in etcd revisions.
//! - Registrations are etcd leases of their TTL (whole seconds, at least etcd's
//!   minimum): etcd removes an instance whose heartbeats stop, whichever replica
//!   it registered through. Lease ids are decimal strings.
//! - Proxy records hang on the session lease of the replica that wrote them
//!   (TTL [`SESSION_TTL_SECS`]); they vanish when that replica dies or is dropped.
//!
//! # Outages
//!
//! Operations fail with [`StoreError::Etcd`] naming the endpoint and the cause.
//! Watches and the session keep-alive retry with backoff (100 ms doubling to 5 s,
//! jittered); meanwhile `config()` and `registry()` keep their last values, so
//! the control plane keeps serving its proxies. Once etcd answers again the
//! followers read the whole state and watch from there.
//!
//! # Endpoints
//!
//! Plain `http://` only for now (TLS and authentication to etcd are a
//! follow-up). With several endpoints every call uses the current one; one that
//! cannot be reached (or has no leader) makes the call move on to the next.
//!
//! An etcd restored from an older backup (revisions going back) is not
//! followed: restart the control-plane replicas after such a restore.

mod config;
mod conn;
mod follow;
mod keys;
mod registry;
mod rpc;
mod session;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::{Instance, Instances, NewRevision, ProxyRecord, Revision, Store, StoreError};
use conn::{Conn, Stop};
use keys::Keys;
pub use session::SESSION_TTL_SECS;

/// Config, registry and proxy records in etcd, shared by every replica.
pub struct EtcdStore {
    inner: Arc<Inner>,
    /// Dropping it ends the background tasks.
    _stop: watch::Sender<()>,
}

/// What the store and its background tasks share (the tasks hold it weakly).
struct Inner {
    conn: Conn,
    keys: Keys,
    keep: usize,
    replica: String,
    config: watch::Sender<Option<Arc<Revision>>>,
    /// The etcd revision `config` reflects.
    config_at: Mutex<i64>,
    registry: watch::Sender<Arc<Instances>>,
    session: session::Session,
}

impl EtcdStore {
    /// Connects to etcd at `endpoints`, keeping the newest `keep` config versions
    /// under `prefix`, as replica `replica`. Fails if no endpoint answers; reads
    /// the current state before returning, so `config()` shows it at once. Must be
    /// called inside a tokio runtime (the watches run on it).
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        keep: usize,
        replica: &str,
    ) -> Result<Arc<Self>, StoreError> {
        let conn = Conn::new(endpoints)?;
        let keys = Keys::new(prefix);
        let lease = conn.grant(SESSION_TTL_SECS).await?;
        let (current, config_at) = config::load(&conn, &keys).await?;
        let (instances, registry_at) = registry::load(&conn, &keys).await?;
        let inner = Arc::new(Inner {
            conn,
            keys,
            keep: keep.max(1),
            replica: replica.to_owned(),
            config: watch::channel(current).0,
            config_at: Mutex::new(config_at),
            registry: watch::channel(Arc::new(instances)).0,
            session: session::Session::new(lease),
        });
        let (stop_tx, stop_rx) = watch::channel(());
        let stop = Stop(stop_rx);
        let weak = Arc::downgrade(&inner);
        tokio::spawn(follow::follow(
            weak.clone(),
            stop.clone(),
            config::ConfigFollower,
            config_at + 1,
        ));
        tokio::spawn(follow::follow(
            weak.clone(),
            stop.clone(),
            registry::RegistryFollower,
            registry_at + 1,
        ));
        tokio::spawn(session::keep_alive(weak, stop));
        tracing::info!(%replica, endpoints = ?endpoints, prefix, "connected to etcd");
        Ok(Arc::new(EtcdStore {
            inner,
            _stop: stop_tx,
        }))
    }
}

impl Inner {
    /// Publishes `current` as of etcd revision `at`, unless something newer is
    /// already published (a replica's own commit can overtake its watch).
    fn publish_config(&self, current: Option<Arc<Revision>>, at: i64) {
        let mut published_at = self.config_at.lock().unwrap_or_else(|e| e.into_inner());
        if at < *published_at {
            return;
        }
        *published_at = at;
        self.config.send_if_modified(|shown| {
            let changed = *shown != current;
            if changed {
                *shown = current;
            }
            changed
        });
    }
}

impl Drop for EtcdStore {
    /// Revokes the session lease, so this replica's proxy records go at once
    /// rather than when the lease expires (best effort: needs a runtime).
    fn drop(&mut self) {
        let inner = self.inner.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let lease = inner.session.lease();
                if let Err(e) = inner.conn.revoke(lease).await {
                    tracing::debug!(error = %e, "session lease not revoked; it expires on its own");
                }
            });
        }
    }
}

impl Store for EtcdStore {
    fn config(&self) -> watch::Receiver<Option<Arc<Revision>>> {
        self.inner.config.subscribe()
    }

    fn commit(
        &self,
        expected: u64,
        next: NewRevision,
    ) -> BoxFuture<'_, Result<Arc<Revision>, StoreError>> {
        Box::pin(config::commit(&self.inner, expected, next))
    }

    fn get(&self, version: u64) -> BoxFuture<'_, Result<Arc<Revision>, StoreError>> {
        Box::pin(config::get_version(&self.inner, version))
    }

    fn history(&self) -> BoxFuture<'_, Result<Vec<Arc<Revision>>, StoreError>> {
        Box::pin(config::history(&self.inner))
    }

    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<String, StoreError>> {
        Box::pin(registry::register(&self.inner, instance, ttl))
    }

    fn heartbeat(&self, lease: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        let lease = lease.to_owned();
        Box::pin(async move { registry::heartbeat(&self.inner, &lease).await })
    }

    fn deregister(&self, lease: &str, drain: bool) -> BoxFuture<'_, Result<(), StoreError>> {
        let lease = lease.to_owned();
        Box::pin(async move { registry::deregister(&self.inner, &lease, drain).await })
    }

    fn registry(&self) -> watch::Receiver<Arc<Instances>> {
        self.inner.registry.subscribe()
    }

    fn report(&self, record: ProxyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(session::report(&self.inner, record))
    }

    fn proxies(&self) -> BoxFuture<'_, Result<Vec<ProxyRecord>, StoreError>> {
        Box::pin(session::proxies(&self.inner))
    }
}
