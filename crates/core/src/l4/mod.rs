//! L4 listeners: `TCP` (bytes proxied to a service) and `TLS` (TLS passed through
//! untouched, routed by the ClientHello's server name). This module owns the accept
//! loop and the graceful drain; `conn` serves one connection, `sni` reads the
//! ClientHello, `proxy` copies the bytes.
//!
//! Drain: when the listener stops it closes its socket at once; connections already
//! open keep running until they end or the drain timeout passes, then they are
//! closed (logged with reason `drain_timeout`).

mod conn;
pub mod original_dst;
mod proxy;
pub mod sni;

use std::sync::Arc;
use std::time::Duration;

use meshgate_observe::metrics::{L4BytesLabels, ListenerLabel};
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::proxy::Shared;
use conn::Listener;
use proxy::ByteMetrics;

/// After the drain timeout, how long closed connections get to write their log
/// lines before their tasks are aborted.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Serves an L4 listener until `stop` turns true, then drains its connections for
/// up to `drain`.
pub async fn accept_loop(
    listener: TcpListener,
    name: Arc<str>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    drain: watch::Receiver<Duration>,
) {
    let label = ListenerLabel {
        listener: name.clone().into(),
    };
    let metrics = &shared.metrics;
    let active = metrics.active_connections.get_or_create(&label).clone();
    let accepted_total = metrics.connections.get_or_create(&label).clone();
    let bytes = |direction| {
        metrics
            .l4_bytes
            .get_or_create(&L4BytesLabels {
                listener: name.clone().into(),
                direction,
            })
            .clone()
    };
    let this = Arc::new(Listener {
        name: name.clone(),
        bytes: ByteMetrics {
            bytes_in: bytes("in"),
            bytes_out: bytes("out"),
        },
    });
    // Turns true when the drain time is up: every open connection closes.
    let (drained_tx, drained) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        let Some((stream, client)) = crate::server::accept::next(&listener, &name, &mut stop).await
        else {
            break;
        };
        // Reap finished connections so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        accepted_total.inc();
        let open = Open::new(&active);
        let (shared, this, drained) = (shared.clone(), this.clone(), drained.clone());
        connections.spawn(async move {
            conn::serve(stream, client, &this, &shared, drained).await;
            drop(open);
        });
    }
    drop(listener);
    let limit = *drain.borrow();
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limit, all_done).await.is_err() {
        tracing::warn!(
            listener = %name,
            drain_timeout = ?limit,
            open = connections.len(),
            "drain timeout passed: closing open TCP/TLS connections"
        );
        let _ = drained_tx.send(true);
        let closing = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(CLOSE_GRACE, closing).await.is_err() {
            connections.shutdown().await;
        }
    }
}

/// One open connection in the listener's `active_connections` gauge, also when its
/// task is aborted.
struct Open(Gauge);

impl Open {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Open(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}
