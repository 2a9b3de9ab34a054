//! Config reloads from the config file, whatever triggers them (file watcher,
//! SIGHUP, admin API): read, validate, compile and apply aside; count and remember
//! the outcome. A bad config is rejected whole and the old one keeps serving.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use meshgate_config::ConfigErrors;
use serde::Serialize;

use crate::server::{Gateway, StartError};

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(ConfigErrors),
    #[error(transparent)]
    Apply(#[from] StartError),
}

/// What the admin API shows about the served config.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    /// 1 at start, +1 for every applied change.
    pub version: u64,
    /// xxh3-64 of the config file's bytes, hex.
    pub hash: String,
    pub source: String,
    /// RFC 3339.
    pub loaded_at: String,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// The last refused reload's errors (file:line:col: path: message), until a
    /// later reload succeeds.
    pub last_error: Option<String>,
}

pub struct Reloader {
    gateway: Arc<Gateway>,
    path: PathBuf,
    status: Mutex<ReloadStatus>,
}

/// Hash of a config source, as shown by the admin API.
pub fn source_hash(src: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(src))
}

impl Reloader {
    /// `initial` is the text the gateway was started from.
    pub fn new(gateway: Arc<Gateway>, path: PathBuf, initial: &str) -> Self {
        gateway.metrics().config_version.set(1);
        let status = ReloadStatus {
            version: 1,
            hash: source_hash(initial.as_bytes()),
            source: path.display().to_string(),
            loaded_at: now(),
            reloads_ok: 0,
            reloads_failed: 0,
            last_error: None,
        };
        Reloader {
            gateway,
            path,
            status: Mutex::new(status),
        }
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    pub fn status(&self) -> ReloadStatus {
        self.lock().clone()
    }

    /// Reloads the file. An unchanged file (same bytes) is not re-applied.
    /// Returns the version now served.
    pub async fn reload(&self, trigger: &'static str) -> Result<u64, ReloadError> {
        let file = self.path.display().to_string();
        let result: Result<Option<String>, ReloadError> = async {
            let src = meshgate_config::read_file(&self.path).map_err(ReloadError::Invalid)?;
            let hash = source_hash(src.as_bytes());
            if hash == self.lock().hash {
                return Ok(None);
            }
            let config = meshgate_config::parse_str(&src, &file).map_err(ReloadError::Invalid)?;
            for w in meshgate_config::warnings(&config, &src, &file) {
                tracing::warn!(trigger, "{w}");
            }
            self.gateway.apply(config).await?;
            Ok(Some(hash))
        }
        .await;
        let metrics = self.gateway.metrics();
        let mut status = self.lock();
        match result {
            Ok(None) => {
                tracing::info!(
                    trigger,
                    version = status.version,
                    "config unchanged, nothing to reload"
                );
                Ok(status.version)
            }
            Ok(Some(hash)) => {
                status.version += 1;
                status.hash = hash;
                status.loaded_at = now();
                status.reloads_ok += 1;
                status.last_error = None;
                metrics.reloaded(true, status.version);
                tracing::info!(trigger, version = status.version, hash = %status.hash, "config reloaded");
                Ok(status.version)
            }
            Err(e) => {
                status.reloads_failed += 1;
                status.last_error = Some(e.to_string());
                metrics.reloaded(false, status.version);
                tracing::error!(
                    trigger,
                    version = status.version,
                    "config rejected, still serving the previous one:\n{e}"
                );
                Err(e)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReloadStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
