//! One listener: bind, accept, serve HTTP/1.1 and h2c with hyper, count
//! connections, and drain gracefully when told to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use meshgate_observe::metrics::ListenerLabel;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::proxy::{ConnInfo, Shared, handle};

pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Serves `listener` until `stop` turns true, then lets open connections finish
/// their in-flight requests for up to `drain`.
pub async fn accept_loop(
    listener: TcpListener,
    name: Arc<str>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    drain: watch::Receiver<Duration>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let local_addr = listener
        .local_addr()
        .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
    let label = ListenerLabel {
        listener: name.clone().into(),
    };
    let active = shared
        .metrics
        .active_connections
        .get_or_create(&label)
        .clone();
    let accepted_total = shared.metrics.connections.get_or_create(&label).clone();
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            // The only value ever sent is `true`: any change means stop.
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(local_addr);
        let conn = Arc::new(ConnInfo {
            listener: name.clone(),
            client,
            local,
            scheme: "http",
        });
        let shared = shared.clone();
        let service = service_fn(move |req| {
            let shared = shared.clone();
            let conn = conn.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(&shared, &conn, req).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(connection);
        accepted_total.inc();
        active.inc();
        let active = active.clone();
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, %client, "connection ended with error");
            }
            active.dec();
        });
    }
    drop(listener);
    let limit = *drain.borrow();
    if tokio::time::timeout(limit, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(listener = %name, drain_timeout = ?limit, "drain timeout passed with connections still open");
    }
}
