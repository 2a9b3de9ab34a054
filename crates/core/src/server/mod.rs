//! The running gateway: its listeners, its current snapshot, config application
//! (routes, services and listeners, without a restart) and the graceful drain.

pub(crate) mod accept;
pub(crate) mod h1;
pub mod mesh;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use meshgate_config::{Config, Listener, ListenerProtocol};
use meshgate_observe::Metrics;
use meshgate_observe::access_log::AccessLog;
use meshgate_observe::trace::Exporter;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::filter::PolicyCompiler;
use crate::proxy::Shared;
use crate::snapshot::{CompileError, Snapshot};

/// Why a gateway could not start, or a config could not be applied.
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

/// A listener being served.
struct Running {
    spec: Listener,
    local: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A running gateway. Methods take `&self`: share it in an `Arc` with the admin
/// API and the reload triggers.
pub struct Gateway {
    shared: Arc<Shared>,
    /// Only touched when config is applied or the gateway stops, never per request.
    listeners: Mutex<Vec<Running>>,
    /// Listeners removed by a reload, still draining; awaited on shutdown.
    draining: Mutex<Vec<JoinHandle<()>>>,
    drain_timeout: watch::Sender<Duration>,
    ready: AtomicBool,
    /// Serialises `apply` calls (file watcher, SIGHUP and admin may race).
    applying: tokio::sync::Mutex<()>,
    compiler: Arc<dyn PolicyCompiler>,
    /// The workload identity `mesh` listeners and services use, if any.
    identity: Option<Arc<crate::identity::WorkloadIdentity>>,
}

impl Gateway {
    /// Compiles `config` (its policies with `compiler`), opens the access log and
    /// binds every listener.
    pub async fn start(
        config: Config,
        compiler: Arc<dyn PolicyCompiler>,
    ) -> Result<Self, StartError> {
        Self::launch(config, compiler, None).await
    }

    /// Like `start`, with the workload identity of a gateway in the mesh (see
    /// `start_with_identity`).
    pub async fn launch(
        config: Config,
        compiler: Arc<dyn PolicyCompiler>,
        identity: Option<Arc<crate::identity::WorkloadIdentity>>,
    ) -> Result<Self, StartError> {
        let log =
            AccessLog::open(&config.access_log.path).map_err(|source| StartError::AccessLog {
                path: config.access_log.path.clone(),
                source,
            })?;
        Self::start_with_identity(config, log, compiler, identity).await
    }

    /// Like `start`, writing the access log to `log`; policies are refused (see
    /// `start_with_policies`).
    pub async fn start_with_log(config: Config, log: AccessLog) -> Result<Self, StartError> {
        Self::start_with_policies(config, log, Arc::new(crate::filter::NoPolicies)).await
    }

    /// Starts with `compiler` turning `policies:` into filters (`meshgate-policy`).
    pub async fn start_with_policies(
        config: Config,
        log: AccessLog,
        compiler: Arc<dyn PolicyCompiler>,
    ) -> Result<Self, StartError> {
        Self::start_with_identity(config, log, compiler, None).await
    }

    /// Like `start_with_policies`, with the workload identity (sidecars, and
    /// gateways joining the mesh) that `listeners[].mesh` and `services[].mesh`
    /// speak mTLS with, for this config and every one applied later. Rotating the
    /// identity needs no re-apply. Without one, a config using `mesh` is refused.
    pub async fn start_with_identity(
        config: Config,
        log: AccessLog,
        compiler: Arc<dyn PolicyCompiler>,
        identity: Option<Arc<crate::identity::WorkloadIdentity>>,
    ) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let log = log.count_drops_in(metrics.access_log_dropped.clone());
        let exporter = Exporter::start(&config.tracing)
            .map(|e| e.with_drop_counter(metrics.spans_dropped.clone()));
        let snapshot =
            Snapshot::compile_with_identity(config, None, &metrics, &*compiler, identity.as_ref())?;
        let (drain_timeout, _) = watch::channel(snapshot.config.runtime.drain_timeout.get());
        let gateway = Gateway {
            shared: Arc::new(Shared {
                snapshot: ArcSwap::from_pointee(snapshot),
                log,
                tunnels: crate::proxy::Tunnels::new(metrics.upgraded_connections.clone()),
                metrics,
                exporter,
                closing: watch::channel(false).0,
            }),
            listeners: Mutex::new(Vec::new()),
            draining: Mutex::new(Vec::new()),
            drain_timeout,
            ready: AtomicBool::new(false),
            applying: tokio::sync::Mutex::new(()),
            compiler,
            identity,
        };
        let specs = gateway.snapshot().config.listeners.clone();
        let bound = bind_all(&specs, false).await?;
        gateway.serve(bound);
        gateway.ready.store(true, Ordering::Release);
        Ok(gateway)
    }

    /// The bound address of listener `name` (useful with port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.lock_listeners()
            .iter()
            .find(|r| r.spec.name == name)
            .map(|r| r.local)
    }

    /// Every listener's name and bound address.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.lock_listeners()
            .iter()
            .map(|r| (r.spec.name.clone(), r.local))
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn shared_for_tests(&self) -> Arc<crate::proxy::Shared> {
        self.shared.clone()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// True from start until shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Applies a validated config: compiles it aside, binds any new listeners, and
    /// only then swaps the snapshot. Anything failing leaves the old config serving.
    /// Requests in flight finish on the snapshot they started with; removed
    /// listeners stop accepting and drain; unchanged services keep their pools.
    pub async fn apply(&self, config: Config) -> Result<(), StartError> {
        let _one_at_a_time = self.applying.lock().await;
        // Big configs compile on a blocking thread: 10,000 routes take ~10 ms, which
        // a worker would otherwise not spend serving. The replaced snapshot is freed
        // on one too (below), and the blocking pool's idle threads are reused, so
        // its memory is usually freed by the thread that allocated it (mimalloc
        // frees from another thread cost ~3x more and slow that thread's next
        // compile). Small ones (a sidecar's) take well under a millisecond: inline,
        // so they do not give a blocking thread an allocator heap of its own.
        let current = self.snapshot();
        let big = config.routes.len() + config.services.len() >= BIG_CONFIG;
        let metrics = self.shared.metrics.clone();
        let compiler = self.compiler.clone();
        let identity = self.identity.clone();
        let compile = move || {
            Snapshot::compile_with_identity(
                config,
                Some(&current),
                &metrics,
                &*compiler,
                identity.as_ref(),
            )
        };
        let next = if big {
            tokio::task::spawn_blocking(compile)
                .await
                .map_err(|e| CompileError(format!("compiling the config failed: {e}")))??
        } else {
            compile()?
        };
        let wanted = &next.config.listeners;
        let (keep, gone): (Vec<Running>, Vec<Running>) = self
            .lock_listeners()
            .drain(..)
            .partition(|r| wanted.iter().any(|l| same_socket(l, &r.spec)));
        let new_specs: Vec<Listener> = wanted
            .iter()
            .filter(|l| !keep.iter().any(|r| same_socket(l, &r.spec)))
            .cloned()
            .collect();
        // A new listener that wants the address of one going away (a rename or a
        // move) can only bind once that one has let go of its socket.
        let (freeing, gone): (Vec<Running>, Vec<Running>) = gone.into_iter().partition(|r| {
            r.spec.address.port() != 0 && new_specs.iter().any(|s| s.address == r.spec.address)
        });
        for r in &freeing {
            let _ = r.stop.send(true);
        }
        let bound = bind_all(&new_specs, !freeing.is_empty()).await;
        let bound = match bound {
            Ok(b) => b,
            Err(e) => {
                self.lock_listeners().extend(keep.into_iter().chain(gone));
                self.retire(freeing);
                return Err(e);
            }
        };
        let _ = self
            .drain_timeout
            .send(next.config.runtime.drain_timeout.get());
        let previous = self.shared.snapshot.swap(Arc::new(next));
        // Freeing a big snapshot takes milliseconds (~6 ms for 10,000 routes): not on
        // a worker serving requests (a request still holding it frees it instead).
        if big {
            tokio::task::spawn_blocking(move || drop(previous));
        }
        // Open connections of callers the new rules deny are closed.
        self.snapshot().mesh_authz.recheck();
        self.lock_listeners().extend(keep);
        self.serve(bound);
        self.retire(freeing.into_iter().chain(gone));
        Ok(())
    }

    /// Stops listeners that left the config; they drain in the background.
    fn retire(&self, gone: impl IntoIterator<Item = Running>) {
        let mut draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        draining.retain(|t| !t.is_finished());
        for r in gone {
            tracing::info!(listener = %r.spec.name, address = %r.local, "listener removed, draining");
            let _ = r.stop.send(true);
            draining.push(r.task);
        }
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout),
    /// and returns once every connection is closed or the timeout passed.
    pub async fn shutdown(&self) {
        self.ready.store(false, Ordering::Release);
        let running: Vec<Running> = self.lock_listeners().drain(..).collect();
        let mut tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.draining.lock().unwrap_or_else(|e| e.into_inner()));
        for r in running {
            let _ = r.stop.send(true);
            tasks.push(r.task);
        }
        self.snapshot().mesh_authz.drain();
        let deadline = *self.drain_timeout.borrow() + Duration::from_millis(100);
        let _ = tokio::time::timeout(deadline, async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
        // Upgraded connections have no request to finish: close them now.
        self.shared.closing.send_replace(true);
        // The last requests' lines must reach the log before the process exits.
        let log = self.shared.log.clone();
        let _ = tokio::task::spawn_blocking(move || log.flush(Duration::from_secs(2))).await;
    }

    fn serve(&self, bound: Vec<(Listener, tokio::net::TcpListener)>) {
        let mut listeners = self.lock_listeners();
        for (spec, socket) in bound {
            let local = socket.local_addr().unwrap_or(spec.address);
            tracing::info!(listener = %spec.name, address = %local, "listening");
            let (stop, stopped) = watch::channel(false);
            let name: Arc<str> = spec.name.as_str().into();
            let drain = self.drain_timeout.subscribe();
            let shared = self.shared.clone();
            let task = match spec.protocol {
                ListenerProtocol::HTTP | ListenerProtocol::HTTPS => {
                    tokio::spawn(accept::accept_loop(socket, name, shared, stopped, drain))
                }
                ListenerProtocol::TCP | ListenerProtocol::TLS => {
                    tokio::spawn(crate::l4::accept_loop(socket, name, shared, stopped, drain))
                }
            };
            listeners.push(Running {
                spec,
                local,
                stop,
                task,
            });
        }
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        // A poisoned lock only means a panic elsewhere; the list itself is intact.
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Routes + services from which `apply` compiles (and frees the replaced snapshot)
/// on a blocking thread rather than inline.
const BIG_CONFIG: usize = 1_000;

/// Whether two listener specs describe the same socket. Policies are not part of
/// it: they live in the snapshot, so changing them must not rebind (on port 0 that
/// would even move the listener to a new port).
fn same_socket(a: &Listener, b: &Listener) -> bool {
    a.name == b.name && a.address == b.address && a.protocol == b.protocol
}

/// Binds every spec or none (sockets bound so far close when this returns an error).
/// With `wait_for_free`, an address still held by a stopping listener is retried
/// for up to a second.
async fn bind_all(
    specs: &[Listener],
    wait_for_free: bool,
) -> Result<Vec<(Listener, tokio::net::TcpListener)>, StartError> {
    let mut bound = Vec::with_capacity(specs.len());
    for spec in specs {
        let mut tries = 0;
        let socket = loop {
            match accept::bind(spec.address) {
                Err(e)
                    if wait_for_free
                        && e.kind() == std::io::ErrorKind::AddrInUse
                        && tries < 100 =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => break other,
            }
        };
        let socket = socket.map_err(|source| StartError::Bind {
            name: spec.name.clone(),
            addr: spec.address,
            source,
        })?;
        bound.push((spec.clone(), socket));
    }
    Ok(bound)
}
