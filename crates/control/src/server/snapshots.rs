//! The snapshot builder: follows the current config revision (`Store::config`) and
//! the discovered endpoints (`discovery::start`) and publishes the gateway snapshot
//! they make into one `watch`. Every proxy stream follows that watch, so a change
//! is built once per control-plane replica, not once per proxy, and a slow proxy
//! only ever sees the newest value (latest wins).

use std::sync::Arc;

use tokio::sync::watch;

use crate::proto::v1::Snapshot;
use crate::snapshot::{self, Discovered};
use crate::store::{Revision, Store};

/// Starts the builder; the receiver holds the latest snapshot (None until a config
/// is applied). The builder stops once every receiver is dropped.
pub fn start(store: Arc<dyn Store>) -> watch::Receiver<Option<Arc<Snapshot>>> {
    let config = store.config();
    let discovered = crate::discovery::start(store);
    // Built now, not in the task: a proxy connecting right after start gets the
    // current version at once.
    let first = build(&config.borrow(), &discovered.borrow());
    let (tx, rx) = watch::channel(first);
    tokio::spawn(follow(tx, config, discovered));
    rx
}

fn build(revision: &Option<Arc<Revision>>, discovered: &Arc<Discovered>) -> Option<Arc<Snapshot>> {
    revision
        .as_ref()
        .map(|r| Arc::new(snapshot::build(r, discovered)))
}

async fn follow(
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    mut config: watch::Receiver<Option<Arc<Revision>>>,
    mut discovered: watch::Receiver<Arc<Discovered>>,
) {
    // Discovery may finish (its sender dropped, e.g. nothing to discover); the
    // config alone then drives snapshots.
    let mut discovery_open = true;
    loop {
        tokio::select! {
            changed = config.changed() => {
                if changed.is_err() {
                    tracing::warn!("config store stopped publishing; snapshots frozen");
                    return;
                }
            }
            changed = discovered.changed(), if discovery_open => {
                if changed.is_err() {
                    discovery_open = false;
                    continue;
                }
            }
            _ = tx.closed() => return,
        }
        let next = build(&config.borrow_and_update(), &discovered.borrow_and_update());
        let unchanged = match (&next, &*tx.borrow()) {
            (Some(n), Some(old)) => n.version == old.version,
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            continue;
        }
        if let Some(s) = &next {
            tracing::info!(version = %s.version, "new snapshot");
        }
        tx.send_replace(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewRevision;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn publishes_each_new_config_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), 5).unwrap();
        let mut snapshots = start(store.clone());
        assert!(snapshots.borrow().is_none());
        let doc = |n: u32| NewRevision {
            yaml: format!("# {n}\n"),
            source: "t".into(),
            note: String::new(),
        };
        store.commit(0, doc(1)).await.unwrap();
        snapshots.changed().await.unwrap();
        let first = snapshots.borrow_and_update().clone().unwrap();
        assert_eq!(first.config_version, 1);
        store.commit(1, doc(2)).await.unwrap();
        snapshots.changed().await.unwrap();
        let second = snapshots.borrow_and_update().clone().unwrap();
        assert_eq!(second.config_version, 2);
        assert_eq!(second.config_yaml, "# 2\n");
    }
}
