//! Where the control plane keeps its state, behind one trait so a single process
//! can run on files ([`embedded`]) and several replicas can share an etcd cluster
//! (`etcd`): the config versions (with history), the service registry (instances
//! with TTL leases) and what each proxy runs.
//!
//! Every implementation is watch-based: [`Store::config`] and [`Store::registry`]
//! follow changes made through *any* replica, so a change applied on one reaches
//! proxies connected to all of them.

pub mod embedded;
pub mod etcd;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One stored config version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// 1, 2, 3…: every apply or rollback makes the next one.
    pub version: u64,
    /// The whole document as applied.
    pub yaml: String,
    /// Where it came from (a file name, "admin API").
    pub source: String,
    /// Milliseconds since the Unix epoch.
    pub applied_at_ms: u64,
    /// Why it exists beyond an apply, e.g. "rollback to 3".
    #[serde(default)]
    pub note: String,
}

/// What a commit stores; the store numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRevision {
    pub yaml: String,
    pub source: String,
    pub note: String,
}

impl Revision {
    pub fn applied_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.applied_at_ms)
    }
}

/// A registered service instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub service: String,
    /// Unique within the service.
    pub instance: String,
    /// `host:port`.
    pub address: String,
    pub weight: u32,
    /// Deregistered with drain: known, but sent no new requests.
    #[serde(default)]
    pub draining: bool,
}

/// Registered instances by service name, then by instance name.
pub type Instances = BTreeMap<String, BTreeMap<String, Instance>>;

/// What a proxy runs, as the control plane last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyRecord {
    pub role: String,
    pub node_id: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub namespace: String,
    pub connected: bool,
    /// Last snapshot version acknowledged ("" if none).
    pub acked: String,
    /// Config version of `acked` (0 if none).
    #[serde(default)]
    pub acked_config: u64,
    /// Last snapshot version refused ("" if none) and why.
    pub nacked: String,
    #[serde(default)]
    pub nacked_config: u64,
    pub nack_reason: String,
    /// The snapshot version last sent to it.
    pub desired: String,
    pub last_seen_ms: u64,
    pub build: String,
    /// The control-plane replica holding its stream.
    pub replica: String,
}

impl ProxyRecord {
    /// Key of the record: one per role and node id.
    pub fn key(&self) -> String {
        format!("{}/{}", self.role, self.node_id)
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else committed first (optimistic concurrency).
    #[error("config changed concurrently: version {current} is current, not {expected}")]
    Conflict { expected: u64, current: u64 },
    #[error("lease {0} not found (expired or never granted)")]
    LeaseNotFound(String),
    #[error("version {0} not found (kept versions: see history)")]
    VersionNotFound(u64),
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    #[error("etcd: {0}")]
    Etcd(String),
}

/// The control plane's persistent (or shared) state.
pub trait Store: Send + Sync + 'static {
    /// Follows the current config revision (None until the first apply), including
    /// commits by other replicas.
    fn config(&self) -> watch::Receiver<Option<Arc<Revision>>>;

    /// Stores `next` as version `expected + 1` if `expected` is still current
    /// (0: nothing applied yet), else `Conflict`. Old versions beyond the kept
    /// history are dropped.
    fn commit(
        &self,
        expected: u64,
        next: NewRevision,
    ) -> BoxFuture<'_, Result<Arc<Revision>, StoreError>>;

    /// A kept version.
    fn get(&self, version: u64) -> BoxFuture<'_, Result<Arc<Revision>, StoreError>>;

    /// Kept versions, newest first.
    fn history(&self) -> BoxFuture<'_, Result<Vec<Arc<Revision>>, StoreError>>;

    /// Registers (or re-registers) an instance for `ttl`; returns the lease id.
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<String, StoreError>>;

    /// Renews a lease for its TTL; `LeaseNotFound` once it has expired.
    fn heartbeat(&self, lease: &str) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Removes the instance of a lease now, or (`drain`) marks it draining until
    /// its lease ends.
    fn deregister(&self, lease: &str, drain: bool) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Follows the registered instances.
    fn registry(&self) -> watch::Receiver<Arc<Instances>>;

    /// Records what a proxy runs (visible through every replica).
    fn report(&self, record: ProxyRecord) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Every proxy record, sorted by key.
    fn proxies(&self) -> BoxFuture<'_, Result<Vec<ProxyRecord>, StoreError>>;
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
