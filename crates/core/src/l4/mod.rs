//! L4 listeners: `TCP` (bytes proxied to a service) and `TLS` (TLS passed through
//! untouched, routed by the ClientHello's server name).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::Shared;

/// Serves an L4 listener until `stop` turns true. (Being written.)
pub async fn accept_loop(
    _listener: TcpListener,
    name: Arc<str>,
    _shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    _drain: watch::Receiver<Duration>,
) {
    tracing::warn!(listener = %name, "TCP/TLS listeners are not served yet");
    let _ = stop.changed().await;
}
