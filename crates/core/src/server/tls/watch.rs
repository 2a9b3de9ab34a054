//! Picks up certificate, key and CA files changed on disk: every second, compare
//! each file's (modification time, size, inode) with what was last loaded; on a
//! change, rebuild the listener's rustls config and swap it in for new handshakes.
//! A file that does not load (half-written, wrong key, garbage) keeps the previous
//! certificates, with a warning; the next change is tried again.
//!
//! Polling (a few `stat` calls per second per listener) rather than inotify: it
//! sees files replaced by rename, symlink swaps (Kubernetes secrets) and files on
//! network filesystems alike, and needs no thread per watcher.

use std::path::Path;
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use meshgate_config::ListenerTls;

use super::TlsListener;

/// How often files are checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies a file's content without reading it; `None` when it cannot be
/// read (a missing file coming back counts as a change).
type Stamp = Option<(SystemTime, u64, u64)>;

/// The stamps of every file `s` names, in a fixed order.
pub(super) fn stamps(s: &ListenerTls) -> Vec<Stamp> {
    let files = s
        .certificates
        .iter()
        .flat_map(|c| [c.cert_file.as_str(), c.key_file.as_str()])
        .chain(s.client_auth.as_ref().map(|a| a.ca_file.as_str()));
    files.map(|f| stamp(Path::new(f))).collect()
}

fn stamp(path: &Path) -> Stamp {
    // `metadata` follows symlinks, so a swapped link target counts as a change.
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some((m.modified().ok()?, m.len(), inode))
}

/// Watches `tls`'s files until it is dropped (a reload that changed its settings,
/// or the listener going away). Outside a tokio runtime nothing is watched.
pub(super) fn spawn(tls: Weak<TlsListener>, mut last: Vec<Stamp>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(tls) = tls.upgrade() else { return };
            let now = stamps(&tls.settings);
            if now == last {
                continue;
            }
            last = now;
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(listener = %tls.listener, "TLS certificate files changed, reloaded")
                }
                Err(e) => tracing::warn!(
                    listener = %tls.listener,
                    error = %e,
                    "TLS certificate files changed but do not load; keeping the previous certificates"
                ),
            }
        }
    });
}
