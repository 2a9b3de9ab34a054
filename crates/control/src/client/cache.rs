//! The last-good cache: the last snapshot a proxy acknowledged, in
//! `<data-dir>/last-good.json`, so it can start (and keep serving) while the
//! control plane is away. Written atomically (temporary file, fsync, rename,
//! directory fsync): a crash leaves the previous file or the new one. A file that
//! cannot be read, parsed or validated is logged and ignored, never fatal.

use std::io::Write;
use std::path::{Path, PathBuf};

use meshgate_config::Config;
use serde::{Deserialize, Serialize};

use crate::proto::v1::{Endpoint, ServiceEndpoints, Snapshot};
use crate::snapshot;

/// The cache file inside a proxy's data dir.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("last-good.json")
}

/// The cached snapshot and the config it opens to, if there is a valid one.
pub fn last_good(data_dir: &Path) -> Option<(Snapshot, Config)> {
    let path = path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the last-good snapshot; ignoring it");
            return None;
        }
    };
    let cached: Cached = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the last-good snapshot is corrupt; ignoring it");
            return None;
        }
    };
    let snapshot = cached.into_snapshot();
    match snapshot::open(&snapshot) {
        Ok(config) => Some((snapshot, config)),
        Err(e) => {
            tracing::warn!(path = %path.display(), version = %snapshot.version, error = %e,
                "the last-good snapshot does not validate; ignoring it");
            None
        }
    }
}

/// Writes `snapshot` as the last-good one (blocking: call off the runtime).
pub fn save(data_dir: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let bytes = serde_json::to_vec_pretty(&Cached::from_snapshot(snapshot))
        .map_err(std::io::Error::other)?;
    let path = path(data_dir);
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    // The rename is durable only once the directory entry is.
    std::fs::File::open(data_dir)?.sync_all()
}

/// The file's shape: the protobuf `Snapshot`, field for field, readable by people.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Cached {
    version: String,
    config_version: u64,
    config_yaml: String,
    #[serde(default)]
    endpoints: Vec<CachedService>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CachedService {
    service: String,
    endpoints: Vec<CachedEndpoint>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CachedEndpoint {
    address: String,
    weight: u32,
}

impl Cached {
    fn from_snapshot(s: &Snapshot) -> Self {
        Cached {
            version: s.version.clone(),
            config_version: s.config_version,
            config_yaml: s.config_yaml.clone(),
            endpoints: s
                .endpoints
                .iter()
                .map(|e| CachedService {
                    service: e.service.clone(),
                    endpoints: e
                        .endpoints
                        .iter()
                        .map(|e| CachedEndpoint {
                            address: e.address.clone(),
                            weight: e.weight,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn into_snapshot(self) -> Snapshot {
        Snapshot {
            version: self.version,
            config_version: self.config_version,
            config_yaml: self.config_yaml,
            endpoints: self
                .endpoints
                .into_iter()
                .map(|s| ServiceEndpoints {
                    service: s.service,
                    endpoints: s
                        .endpoints
                        .into_iter()
                        .map(|e| Endpoint {
                            address: e.address,
                            weight: e.weight,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            version: "3-00000000".into(),
            config_version: 3,
            config_yaml: "services:\n  - name: orders\n    endpoints: [\"127.0.0.1:1\"]\n".into(),
            endpoints: vec![ServiceEndpoints {
                service: "orders".into(),
                endpoints: vec![Endpoint {
                    address: "10.0.0.1:80".into(),
                    weight: 2,
                }],
            }],
        }
    }

    #[test]
    fn round_trips_and_ignores_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(last_good(dir.path()).is_none());

        save(dir.path(), &sample()).unwrap();
        let (snapshot, config) = last_good(dir.path()).unwrap();
        assert_eq!(snapshot, sample());
        assert_eq!(config.services[0].endpoints[0].address, "10.0.0.1:80");
        assert!(!path(dir.path()).with_extension("json.tmp").exists());

        std::fs::write(path(dir.path()), b"{\"version\": ").unwrap();
        assert!(last_good(dir.path()).is_none(), "truncated file is ignored");

        let mut invalid = sample();
        invalid.config_yaml = "services: [{name: x}]\n".into();
        save(dir.path(), &invalid).unwrap();
        assert!(last_good(dir.path()).is_none(), "invalid config is ignored");
    }
}
