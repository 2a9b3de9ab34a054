//! The process-stopping signals, one definition for every long-running command
//! (`meshgate run`, `meshgate gateway`, `meshgate control`).

/// Waits for SIGTERM or SIGINT; returns its name (for the log). Where the
/// handlers cannot be installed, waits for Ctrl-C instead.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return "ctrl-c";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
