//! The snapshots of one sidecar's config stream. A task follows the stored config
//! and the registry and publishes the sidecar's generated config into a `watch`
//! the stream reads (latest wins, as for gateways): a new snapshot only when the
//! generated document changed. The snapshot carries the document serialized as
//! JSON (which is YAML) in `config_yaml` (endpoints included, `endpoints` empty),
//! so a sidecar opens it like any snapshot (`snapshot::open`), by the JSON path
//! of the config parser. Its version is `<config
//! version>-<hash of the document>`: equal on every replica and for every
//! instance of the service.

use std::sync::Arc;

use meshgate_config::Config;
use tokio::sync::watch;
use tonic::Status;

use super::generate::{GenerateError, sidecar_config};
use crate::proto::v1::Snapshot;
use crate::server::ControlPlane;
use crate::store::{Instances, Revision};

/// The snapshot receiver of a sidecar of `service` in `namespace` (`""` means
/// `default`). FAILED_PRECONDITION when the current config does not declare the
/// service in `mesh.services` (the sidecar retries with backoff). The task
/// behind it ends when the receiver is dropped.
pub fn snapshots(
    cp: &ControlPlane,
    service: &str,
    namespace: &str,
) -> Result<watch::Receiver<Option<Arc<Snapshot>>>, Status> {
    let namespace = if namespace.is_empty() {
        "default"
    } else {
        namespace
    };
    let mut follower = Follower {
        service: service.to_owned(),
        namespace: namespace.to_owned(),
        config: cp.store.config(),
        registry: cp.store.registry(),
        parsed: None,
    };
    let first = match follower.build() {
        Ok(first) => first,
        Err(e @ (GenerateError::NoMesh | GenerateError::UnknownService { .. })) => {
            return Err(Status::failed_precondition(format!(
                "sidecar of {service:?} (namespace {namespace:?}): {e}"
            )));
        }
        Err(e) => {
            // Not the sidecar's fault: it waits for a config that generates.
            tracing::warn!(%service, %namespace, error = %e, "cannot generate the sidecar config");
            None
        }
    };
    let (tx, rx) = watch::channel(first);
    tokio::spawn(follower.run(tx));
    Ok(rx)
}

struct Follower {
    service: String,
    namespace: String,
    config: watch::Receiver<Option<Arc<Revision>>>,
    registry: watch::Receiver<Arc<Instances>>,
    /// The current revision's parsed document (parsed once per version).
    parsed: Option<(u64, Arc<Config>)>,
}

impl Follower {
    async fn run(mut self, tx: watch::Sender<Option<Arc<Snapshot>>>) {
        loop {
            tokio::select! {
                changed = self.config.changed() => if changed.is_err() { return },
                changed = self.registry.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
            match self.build() {
                Ok(Some(next)) => {
                    tx.send_if_modified(|current| {
                        if current.as_ref().is_some_and(|c| c.version == next.version) {
                            return false;
                        }
                        *current = Some(next);
                        true
                    });
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(service = %self.service, namespace = %self.namespace,
                    error = %e, "cannot generate the sidecar config; the sidecar keeps its current one"),
            }
        }
    }

    /// The snapshot of the current revision and registry; None before any apply.
    fn build(&mut self) -> Result<Option<Arc<Snapshot>>, GenerateError> {
        let Some(revision) = self.config.borrow_and_update().clone() else {
            return Ok(None);
        };
        let doc = self.document(&revision)?;
        let instances = self.registry.borrow_and_update().clone();
        let config = sidecar_config(&doc, &self.service, &self.namespace, &instances)?;
        Ok(Some(Arc::new(snapshot_of(revision.version, &config)?)))
    }

    fn document(&mut self, revision: &Revision) -> Result<Arc<Config>, GenerateError> {
        if let Some((version, doc)) = &self.parsed
            && *version == revision.version
        {
            return Ok(doc.clone());
        }
        let source = format!("control-plane:v{}", revision.version);
        // An applied document was validated; one that no longer parses (a newer
        // meshgate's) cannot give sidecars anything.
        let doc = meshgate_config::parse_str(&revision.yaml, &source)
            .map_err(|e| GenerateError::Model(e.to_string()))?;
        let doc = Arc::new(doc);
        self.parsed = Some((revision.version, doc.clone()));
        Ok(doc)
    }
}

/// The snapshot carrying `config` as generated for config version `version`.
pub fn snapshot_of(version: u64, config: &Config) -> Result<Snapshot, GenerateError> {
    let yaml = to_json(config)?;
    let hash = xxhash_rust::xxh3::xxh3_64(yaml.as_bytes()) as u32;
    Ok(Snapshot {
        version: format!("{version}-{hash:08x}"),
        config_version: version,
        config_yaml: yaml,
        endpoints: Vec::new(),
    })
}

/// The document as JSON (meshgate's parser reads it back to the same config,
/// without its YAML machinery).
fn to_json(config: &Config) -> Result<String, GenerateError> {
    serde_json::to_string(config).map_err(|e| GenerateError::Model(e.to_string()))
}
