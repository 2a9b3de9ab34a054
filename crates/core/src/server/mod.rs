//! Listeners and connections: binding, accepting, serving HTTP/1.1 and h2c with
//! hyper, and the graceful drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use meshgate_config::Config;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::access_log::AccessLog;
use crate::proxy::{ConnInfo, Shared, handle};
use crate::snapshot::{CompileError, Snapshot};

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("cannot listen on {addr} (listener {name:?}): {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open access log {path:?}: {source}")]
    AccessLog {
        path: String,
        source: std::io::Error,
    },
}

/// A running gateway: its listeners, its current snapshot, its shutdown switch.
pub struct Gateway {
    shared: Arc<Shared>,
    addrs: Vec<(String, SocketAddr)>,
    stop: watch::Sender<bool>,
    listeners: JoinSet<()>,
    drain_timeout: Duration,
}

impl Gateway {
    /// Compiles `config`, opens the access log and binds every listener.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let log =
            AccessLog::open(&config.access_log.path).map_err(|source| StartError::AccessLog {
                path: config.access_log.path.clone(),
                source,
            })?;
        Self::start_with_log(config, log).await
    }

    pub async fn start_with_log(config: Config, log: AccessLog) -> Result<Self, StartError> {
        let drain_timeout = config.runtime.drain_timeout.get();
        let listener_specs = config.listeners.clone();
        let snapshot = Snapshot::compile(config, None)?;
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            log,
        });
        let (stop, stopped) = watch::channel(false);
        let mut listeners = JoinSet::new();
        let mut addrs = Vec::new();
        for (index, spec) in listener_specs.iter().enumerate() {
            let listener = bind(spec.address).map_err(|source| StartError::Bind {
                name: spec.name.clone(),
                addr: spec.address,
                source,
            })?;
            let local = listener.local_addr().unwrap_or(spec.address);
            tracing::info!(listener = %spec.name, address = %local, "listening");
            addrs.push((spec.name.clone(), local));
            listeners.spawn(accept_loop(
                listener,
                index,
                shared.clone(),
                stopped.clone(),
                drain_timeout,
            ));
        }
        Ok(Gateway {
            shared,
            addrs,
            stop,
            listeners,
            drain_timeout,
        })
    }

    /// The bound address of listener `name` (useful with port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    pub fn addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// Replaces routes and services; requests in flight finish on the old snapshot.
    /// Listener changes need a restart for now.
    pub fn reload(&self, config: Config) -> Result<(), CompileError> {
        let current = self.shared.snapshot.load();
        let next = Snapshot::compile(config, Some(&current))?;
        self.shared.snapshot.store(Arc::new(next));
        Ok(())
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout), and
    /// returns once every connection is closed or the timeout passed.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let deadline = self.drain_timeout + Duration::from_millis(100);
        let _ = tokio::time::timeout(deadline, async {
            while self.listeners.join_next().await.is_some() {}
        })
        .await;
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
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

async fn accept_loop(
    listener: TcpListener,
    index: usize,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
    drain_timeout: Duration,
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
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Typically EMFILE: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(local_addr);
                let conn = Arc::new(ConnInfo { listener: index, client, local, scheme: "http" });
                let shared = shared.clone();
                let service = service_fn(move |req| {
                    let shared = shared.clone();
                    let conn = conn.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&shared, &conn, req).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = watched.await {
                        tracing::debug!(error = %e, %client, "connection ended with error");
                    }
                });
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain_timeout,
            "drain timeout passed with connections still open"
        );
    }
}
