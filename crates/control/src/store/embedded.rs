//! The embedded store: one control-plane process, no infrastructure. Config
//! versions are files under `<data-dir>/config/` (one JSON file per version,
//! written to a temporary file, synced and renamed into place, so a crash leaves
//! either the old or the new version, never half of one); the current version is
//! the highest file. The registry and the proxy records live in memory: instances
//! re-register when their heartbeat hears `NOT_FOUND` after a restart, and proxies
//! report again when they reconnect.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::{Instance, Instances, NewRevision, ProxyRecord, Revision, Store, StoreError, now_ms};

/// How often expired leases are swept.
const SWEEP: Duration = Duration::from_millis(200);

/// Config versions in files, registry and proxy records in memory.
pub struct EmbeddedStore {
    dir: PathBuf,
    keep: usize,
    /// Serialises commits (compare-and-set on the current version).
    commit_lock: tokio::sync::Mutex<()>,
    config: watch::Sender<Option<Arc<Revision>>>,
    leases: Arc<Mutex<Leases>>,
    registry: Arc<watch::Sender<Arc<Instances>>>,
    proxies: Mutex<HashMap<String, ProxyRecord>>,
}

/// Live leases: id → (instance key, deadline, ttl), and the lease of each
/// instance (so re-registering does not scan every lease).
#[derive(Default)]
struct Leases {
    by_id: HashMap<String, Lease>,
    by_instance: HashMap<(String, String), String>,
}

impl Leases {
    /// Adds `lease` as `id`, dropping the instance's previous lease if any.
    fn insert(&mut self, id: String, lease: Lease) {
        let key = (lease.service.clone(), lease.instance.clone());
        if let Some(old) = self.by_instance.insert(key, id.clone()) {
            self.by_id.remove(&old);
        }
        self.by_id.insert(id, lease);
    }

    fn remove(&mut self, id: &str) -> Option<Lease> {
        let lease = self.by_id.remove(id)?;
        self.by_instance
            .remove(&(lease.service.clone(), lease.instance.clone()));
        Some(lease)
    }
}

struct Lease {
    service: String,
    instance: String,
    ttl: Duration,
    deadline: Instant,
}

impl EmbeddedStore {
    /// Opens (creating) the store under `data_dir`, keeping the newest `keep`
    /// versions. Must be called inside a tokio runtime (lease expiry runs on it).
    pub fn open(data_dir: &Path, keep: usize) -> Result<Arc<Self>, StoreError> {
        let dir = data_dir.join("config");
        std::fs::create_dir_all(&dir)?;
        let current = read_versions(&dir)?.pop().map(Arc::new);
        let store = Arc::new(EmbeddedStore {
            dir,
            keep: keep.max(1),
            commit_lock: tokio::sync::Mutex::new(()),
            config: watch::channel(current).0,
            leases: Arc::default(),
            registry: Arc::new(watch::channel(Arc::default()).0),
            proxies: Mutex::default(),
        });
        tokio::spawn(sweep(Arc::downgrade(&store)));
        Ok(store)
    }

    fn path_of(&self, version: u64) -> PathBuf {
        self.dir.join(format!("{version:020}.json"))
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_registry(&self, change: impl FnOnce(&mut Instances)) {
        self.registry.send_modify(|all| change(Arc::make_mut(all)));
    }

    async fn commit_inner(
        &self,
        expected: u64,
        next: NewRevision,
    ) -> Result<Arc<Revision>, StoreError> {
        let _one = self.commit_lock.lock().await;
        let current = self.config.borrow().as_ref().map_or(0, |r| r.version);
        if current != expected {
            return Err(StoreError::Conflict { expected, current });
        }
        let revision = Revision {
            version: current + 1,
            yaml: next.yaml,
            source: next.source,
            applied_at_ms: now_ms(),
            note: next.note,
        };
        let bytes =
            serde_json::to_vec_pretty(&revision).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let path = self.path_of(revision.version);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &bytes))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        self.prune(revision.version);
        let revision = Arc::new(revision);
        self.config.send_replace(Some(revision.clone()));
        Ok(revision)
    }

    /// Drops versions older than the kept history (best effort: a leftover file
    /// is only disk space).
    fn prune(&self, newest: u64) {
        let oldest_kept = newest.saturating_sub(self.keep as u64 - 1);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if version_of(&entry.path()).is_some_and(|v| v < oldest_kept) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl Store for EmbeddedStore {
    fn config(&self) -> watch::Receiver<Option<Arc<Revision>>> {
        self.config.subscribe()
    }

    fn commit(
        &self,
        expected: u64,
        next: NewRevision,
    ) -> BoxFuture<'_, Result<Arc<Revision>, StoreError>> {
        Box::pin(self.commit_inner(expected, next))
    }

    fn get(&self, version: u64) -> BoxFuture<'_, Result<Arc<Revision>, StoreError>> {
        Box::pin(async move {
            let path = self.path_of(version);
            match tokio::fs::read(&path).await {
                Ok(bytes) => parse(&path, &bytes).map(Arc::new),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(StoreError::VersionNotFound(version))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    fn history(&self) -> BoxFuture<'_, Result<Vec<Arc<Revision>>, StoreError>> {
        Box::pin(async move {
            let dir = self.dir.clone();
            let mut all = tokio::task::spawn_blocking(move || read_versions(&dir))
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
            all.reverse();
            Ok(all.into_iter().map(Arc::new).collect())
        })
    }

    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<String, StoreError>> {
        Box::pin(async move {
            let id = {
                let mut leases = self.leases();
                // Re-registering the same instance replaces its old lease.
                // Unguessable: a registrar may only heartbeat or remove a lease it
                // was given, and the id is the only proof it has.
                let id = random_id()?;
                leases.insert(
                    id.clone(),
                    Lease {
                        service: instance.service.clone(),
                        instance: instance.instance.clone(),
                        ttl,
                        deadline: Instant::now() + ttl,
                    },
                );
                id
            };
            self.update_registry(|all| {
                all.entry(instance.service.clone())
                    .or_default()
                    .insert(instance.instance.clone(), instance);
            });
            Ok(id)
        })
    }

    fn heartbeat(&self, lease: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        let lease = lease.to_owned();
        Box::pin(async move {
            let mut leases = self.leases();
            let l = leases
                .by_id
                .get_mut(&lease)
                .ok_or(StoreError::LeaseNotFound(lease))?;
            l.deadline = Instant::now() + l.ttl;
            Ok(())
        })
    }

    fn deregister(&self, lease: &str, drain: bool) -> BoxFuture<'_, Result<(), StoreError>> {
        let lease = lease.to_owned();
        Box::pin(async move {
            let (service, instance) = {
                let mut leases = self.leases();
                let l = if drain {
                    leases
                        .by_id
                        .get(&lease)
                        .map(|l| (l.service.clone(), l.instance.clone()))
                } else {
                    leases.remove(&lease).map(|l| (l.service, l.instance))
                };
                l.ok_or(StoreError::LeaseNotFound(lease))?
            };
            self.update_registry(|all| match all.get_mut(&service) {
                Some(of_service) if drain => {
                    if let Some(i) = of_service.get_mut(&instance) {
                        i.draining = true;
                    }
                }
                Some(of_service) => {
                    of_service.remove(&instance);
                    if of_service.is_empty() {
                        all.remove(&service);
                    }
                }
                None => {}
            });
            Ok(())
        })
    }

    fn registry(&self) -> watch::Receiver<Arc<Instances>> {
        self.registry.subscribe()
    }

    fn report(&self, record: ProxyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut proxies = self.proxies.lock().unwrap_or_else(|e| e.into_inner());
        proxies.insert(record.key(), record);
        Box::pin(async { Ok(()) })
    }

    fn proxies(&self) -> BoxFuture<'_, Result<Vec<ProxyRecord>, StoreError>> {
        let proxies = self.proxies.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<ProxyRecord> = proxies.values().cloned().collect();
        all.sort_by_key(ProxyRecord::key);
        Box::pin(async move { Ok(all) })
    }
}

/// Removes instances whose lease ran out, until the store is dropped.
async fn sweep(store: Weak<EmbeddedStore>) {
    loop {
        tokio::time::sleep(SWEEP).await;
        let Some(store) = store.upgrade() else { return };
        let now = Instant::now();
        let expired: Vec<(String, String)> = {
            let mut leases = store.leases();
            let gone: Vec<String> = leases
                .by_id
                .iter()
                .filter(|(_, l)| l.deadline <= now)
                .map(|(id, _)| id.clone())
                .collect();
            gone.iter()
                .filter_map(|id| leases.remove(id))
                .map(|l| (l.service, l.instance))
                .collect()
        };
        if expired.is_empty() {
            continue;
        }
        for (service, instance) in &expired {
            tracing::info!(%service, %instance, "registration expired (no heartbeat)");
        }
        store.update_registry(|all| {
            for (service, instance) in expired {
                if let Some(of_service) = all.get_mut(&service) {
                    of_service.remove(&instance);
                    if of_service.is_empty() {
                        all.remove(&service);
                    }
                }
            }
        });
    }
}

/// 128 bits from the system's secure random generator, in hex.
fn random_id() -> Result<String, StoreError> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| StoreError::Io(std::io::Error::other("system random generator failed")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn version_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".json")?.parse().ok()
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Revision, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))
}

/// Every kept version, oldest first. Temporary files of an interrupted write are
/// ignored (and removed).
fn read_versions(dir: &Path) -> Result<Vec<Revision>, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if let Some(v) = version_of(&path) {
            found.push((v, path));
        }
    }
    found.sort();
    found
        .into_iter()
        .map(|(_, path)| parse(&path, &std::fs::read(&path)?))
        .collect()
}

/// Writes `bytes` to `path` so that a crash leaves the old state or the new one.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The rename is durable only once the directory entry is.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
