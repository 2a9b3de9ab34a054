//! Reload triggers for `meshgate run`: SIGHUP, and changes to the config file
//! (watched through its directory, since editors and `kubectl`-style tools replace
//! files by rename; events are debounced).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshgate_core::Reloader;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Reloads on every SIGHUP until the process ends.
pub fn spawn_sighup(reloader: Arc<Reloader>) {
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload by file change or admin API");
                return;
            }
        };
        while hup.recv().await.is_some() {
            let _ = reloader.reload("SIGHUP").await;
        }
    });
}

/// Watches `path` and reloads after `debounce` of quiet following a change. The
/// returned watcher must be kept alive.
pub fn spawn_file_watch(
    reloader: Arc<Reloader>,
    path: PathBuf,
    debounce: Duration,
) -> notify::Result<notify::RecommendedWatcher> {
    let file = path.canonicalize().unwrap_or(path);
    let dir = file
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let target = file.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
            && event
                .paths
                .iter()
                .any(|p| p == &target || p.file_name() == target.file_name())
        {
            // A full channel already means "reload pending".
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait until events stop arriving for `debounce`.
            while let Ok(Some(())) = tokio::time::timeout(debounce, rx.recv()).await {}
            let _ = reloader.reload("file change").await;
        }
    });
    tracing::info!(file = %file.display(), ?debounce, "watching the config file");
    Ok(watcher)
}
