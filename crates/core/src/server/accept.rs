//! One HTTP listener: bind, accept, serve HTTP/1.1 with meshgate's own server
//! (`server::h1`, which hands h2c, upgrades and unusual requests to hyper) and
//! HTTP/2 with hyper (on an `HTTPS` listener, TLS first: the handshake runs in the
//! connection's own task, then HTTP/2 or HTTP/1.1 by ALPN, failures counted by
//! reason in [`handshake`]), answer `httpsRedirect` listeners with 301s
//! ([`redirect`], logged), count connections, and drain gracefully when told to stop.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use meshgate_config::ListenerProtocol;
use meshgate_observe::metrics::{ListenerLabel, TlsFailure};
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use super::tls::{ClientCert, TlsListener};
use crate::proxy::{ConnInfo, Shared, handle};
use crate::snapshot::Snapshot;

pub(super) mod handshake;
mod redirect;

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

/// The next accepted connection, or `None` once `stop` turns true. Accept errors
/// (typically EMFILE) are logged and retried after a short pause, never spun on.
pub(crate) async fn next(
    listener: &TcpListener,
    name: &str,
    stop: &mut watch::Receiver<bool>,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => return Some(pair),
                Err(e) => {
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // The only value ever sent is `true`: any change means stop.
            _ = stop.changed() => return None,
        }
    }
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
    let builders = Arc::new(Builders::new());
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
    let mut mode = ModeCache::default();
    loop {
        let Some((stream, client)) = crate::server::accept::next(&listener, &name, &mut stop).await
        else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(local_addr);
        let conn = ConnInfo {
            listener: name.clone(),
            client,
            local,
            scheme: "http",
            client_cert: None,
        };
        accepted_total.inc();
        active.inc();
        let job = Connection {
            mode: mode.current(&shared, &name).clone(),
            ctx: ConnCtx {
                shared: shared.clone(),
                builders: builders.clone(),
                watcher: graceful.watcher(),
                active: active.clone(),
                stop: stop.clone(),
            },
        };
        let Some(worker) = crate::workers::next() else {
            tokio::spawn(job.serve(stream, conn));
            continue;
        };
        // A socket belongs to the reactor of the runtime that registered it: moved
        // to its worker's, or every readiness event would wake this thread first.
        match stream.into_std() {
            Ok(std) => {
                worker.spawn(async move {
                    match TcpStream::from_std(std) {
                        Ok(stream) => job.serve(stream, conn).await,
                        Err(e) => {
                            tracing::debug!(error = %e, %client, "cannot move the connection to its worker");
                            job.ctx.active.dec();
                        }
                    }
                });
            }
            Err(e) => {
                tracing::debug!(error = %e, %client, "cannot move the connection to a worker");
                active.dec();
            }
        }
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

/// The hyper connection builders of a listener: auto-detecting (cleartext, and TLS
/// without ALPN) and one per ALPN protocol.
pub(crate) struct Builders {
    pub(crate) auto: auto::Builder<TokioExecutor>,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new() -> Self {
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30));
        // Extended CONNECT (RFC 8441): WebSocket over HTTP/2 (`proxy::upgrade`).
        auto.http2()
            .timer(TokioTimer::new())
            .enable_connect_protocol();
        Builders {
            h1: auto.clone().http1_only(),
            h2: auto.clone().http2_only(),
            auto,
        }
    }

    pub(crate) fn for_alpn(&self, alpn: Option<&[u8]>) -> &auto::Builder<TokioExecutor> {
        match alpn {
            Some(b"h2") => &self.h2,
            Some(b"http/1.1") => &self.h1,
            _ => &self.auto,
        }
    }
}

/// The proxy as the hyper service of one connection (`handle` for each request).
pub(crate) fn proxy_service(
    shared: Arc<Shared>,
    conn: ConnInfo,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::proxy::LoggedBody>,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone {
    let conn = Arc::new(conn);
    service_fn(move |req| {
        let shared = shared.clone();
        let conn = conn.clone();
        async move {
            Ok::<_, std::convert::Infallible>(handle(&shared, &conn, req.map(Into::into)).await)
        }
    })
}

/// What serving a connection needs once its TLS (or mesh) handshake is done.
pub(crate) struct Handshaken {
    pub shared: Arc<Shared>,
    pub builders: Arc<Builders>,
    pub watcher: Watcher,
    pub stop: watch::Receiver<bool>,
}

/// Serves a connection after its TLS or mesh handshake (or a mesh listener's
/// permissive plaintext): mesh authorization first (a caller no request could be
/// allowed for is closed now; tracked connections are re-judged, and closed if
/// denied, on config changes), then HTTP/2 by ALPN with hyper, anything else with
/// meshgate's HTTP/1.1 server (which hands h2c and the unusual to hyper itself).
pub(crate) async fn serve_handshaken<IO>(
    io: IO,
    alpn: Option<&[u8]>,
    conn: ConnInfo,
    listener: Handshaken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let client = conn.client;
    let Some(admitted) = crate::mesh_authz::admit(&listener.shared, &conn) else {
        return;
    };
    let io = admitted.wrap(io);
    let builder = listener.builders.for_alpn(alpn);
    let served = if alpn == Some(b"h2") {
        let service = proxy_service(listener.shared, conn);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        admitted.serve(listener.watcher, connection).await
    } else {
        let http = super::h1::Serve {
            shared: listener.shared,
            builder,
            watcher: listener.watcher,
            stop: listener.stop,
            admitted,
        };
        super::h1::serve(io, conn, http).await
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, %client, "connection ended with error");
    }
}

/// One accepted connection of an HTTP listener, served in its own task (on a
/// worker thread in thread-per-core mode, see `crate::workers`).
struct Connection {
    mode: Mode,
    ctx: ConnCtx,
}

/// What every connection task of an HTTP listener holds, whatever its mode.
pub(crate) struct ConnCtx {
    pub shared: Arc<Shared>,
    pub builders: Arc<Builders>,
    /// Taken at accept, so a drain waits for handshakes in progress.
    pub watcher: Watcher,
    /// The listener's open-connections gauge, decremented when the task ends.
    pub active: Gauge,
    /// Turns true when the listener stops (the drain begins).
    pub stop: watch::Receiver<bool>,
}

impl ConnCtx {
    /// What serving the connection takes, and the gauge its task decrements.
    pub(crate) fn split(self) -> (Handshaken, Gauge) {
        let ConnCtx {
            shared,
            builders,
            watcher,
            active,
            stop,
        } = self;
        let listener = Handshaken {
            shared,
            builders,
            watcher,
            stop,
        };
        (listener, active)
    }
}

impl Connection {
    async fn serve(self, stream: TcpStream, mut conn: ConnInfo) {
        let Connection { mode, ctx } = self;
        let client = conn.client;
        let ended = match mode {
            // Boxed: the handshakes' state would otherwise size every plain
            // connection's task (measured: +7.5 KB per idle connection).
            Mode::Tls(tls) => {
                conn.scheme = "https";
                return Box::pin(TlsConn { tls, ctx }.serve(stream, conn)).await;
            }
            Mode::Mesh(mesh) => {
                let task = super::mesh::conn::MeshConn { mesh, ctx };
                return Box::pin(task.serve(stream, conn)).await;
            }
            // meshgate's HTTP/1.1 server; hyper's for the rest (h2c, upgrades…).
            Mode::Plain => {
                let serve = super::h1::Serve {
                    shared: ctx.shared,
                    builder: &ctx.builders.auto,
                    watcher: ctx.watcher,
                    stop: ctx.stop,
                    admitted: crate::mesh_authz::Admitted::Untracked,
                };
                super::h1::serve(stream, conn, serve).await
            }
            Mode::Redirect(port) => {
                let (shared, conn) = (ctx.shared, Arc::new(conn));
                let service = service_fn(move |req| {
                    let reply = redirect::answer(&shared, &conn, port, req);
                    async move { Ok::<_, std::convert::Infallible>(reply) }
                });
                let connection = ctx
                    .builders
                    .auto
                    .serve_connection(TokioIo::new(stream), service);
                ctx.watcher.watch(connection).await
            }
            Mode::Refuse => Ok(()),
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, %client, "connection ended with error");
        }
        ctx.active.dec();
    }
}

/// How this listener serves new connections under the current snapshot.
#[derive(Clone)]
enum Mode {
    Plain,
    Redirect(u16),
    Tls(Arc<TlsListener>),
    /// Mesh mTLS (`listeners[].mesh`), plaintext too when `PERMISSIVE`.
    Mesh(Arc<super::mesh::MeshListener>),
    /// An `HTTPS` listener without TLS state (cannot happen with a compiled
    /// snapshot); connections are closed rather than served in cleartext.
    Refuse,
}

impl Mode {
    fn of(snapshot: &Snapshot, name: &str) -> Mode {
        let Some(spec) = snapshot.config.listeners.iter().find(|l| l.name == name) else {
            return Mode::Plain;
        };
        match spec.protocol {
            ListenerProtocol::HTTPS => match snapshot.listener_tls.get(name) {
                Some(tls) => Mode::Tls(tls.clone()),
                None => {
                    tracing::error!(listener = %name, "HTTPS listener without TLS state");
                    Mode::Refuse
                }
            },
            _ if spec.mesh.is_some() => match snapshot.listener_mesh.get(name) {
                Some(mesh) => Mode::Mesh(mesh.clone()),
                None => {
                    tracing::error!(listener = %name, "mesh listener without mesh state");
                    Mode::Refuse
                }
            },
            _ => match &spec.https_redirect {
                Some(r) => Mode::Redirect(r.port.get()),
                None => Mode::Plain,
            },
        }
    }
}

/// The mode, recomputed only when the snapshot changed: per connection this costs
/// one `ArcSwap` load and a pointer comparison.
struct ModeCache {
    /// Held weakly so an old snapshot is not kept alive by an idle listener; the
    /// allocation stays while the `Weak` exists, so its address cannot be reused.
    snapshot: Weak<Snapshot>,
    mode: Mode,
}

impl Default for ModeCache {
    fn default() -> Self {
        ModeCache {
            snapshot: Weak::new(),
            mode: Mode::Plain,
        }
    }
}

impl ModeCache {
    fn current(&mut self, shared: &Shared, name: &str) -> &Mode {
        let snapshot = shared.snapshot.load();
        if !std::ptr::eq(self.snapshot.as_ptr(), Arc::as_ptr(&snapshot)) {
            self.mode = Mode::of(&snapshot, name);
            self.snapshot = Arc::downgrade(&snapshot);
        }
        &self.mode
    }
}

/// A connection of an `HTTPS` listener, before its handshake.
struct TlsConn {
    tls: Arc<TlsListener>,
    ctx: ConnCtx,
}

impl TlsConn {
    async fn serve(self, stream: TcpStream, mut conn: ConnInfo) {
        let TlsConn { tls, ctx } = self;
        let (listener, active) = ctx.split();
        let client = conn.client;
        let limit = tls.handshake_timeout();
        match tokio::time::timeout(limit, handshake::accept(&tls.acceptor(), stream)).await {
            Ok(Ok(stream)) => {
                let (_, session) = stream.get_ref();
                let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
                conn.client_cert = session
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| ClientCert::from_der(leaf))
                    .map(Arc::new);
                serve_handshaken(stream, alpn.as_deref(), conn, listener).await;
            }
            // Failed handshakes are routine on a public port (scanners, clients
            // that do not trust the certificate): debug, not warn; counted by reason.
            Ok(Err(failed)) => {
                let reason = failed.reason();
                let failures = &listener.shared.metrics.tls_handshake_failures;
                failures.inc(&conn.listener, reason);
                tracing::debug!(listener = %conn.listener, %client, error = %failed.error, reason = reason.as_str(), "TLS handshake failed")
            }
            Err(_) => {
                let failures = &listener.shared.metrics.tls_handshake_failures;
                failures.inc(&conn.listener, TlsFailure::Timeout);
                tracing::debug!(listener = %conn.listener, %client, timeout = ?limit, "TLS handshake timed out")
            }
        }
        active.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a plain connection's task allocates before hyper's buffers: the served
    /// future (~2 KB; 11.6 KB when the TLS branch was not boxed). Kept small so idle
    /// keep-alive connections stay cheap (bench/memory.sh measures the whole cost).
    #[tokio::test]
    async fn a_plain_connection_task_is_not_sized_for_tls() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let config = meshgate_config::parse_str(
            "listeners: [{name: l, address: \"127.0.0.1:0\"}]\n",
            "t.yaml",
        )
        .unwrap();
        let gateway = crate::Gateway::start_with_log(config, crate::access_log::AccessLog::off())
            .await
            .unwrap();
        let graceful = GracefulShutdown::new();
        let job = Connection {
            mode: Mode::Plain,
            ctx: ConnCtx {
                shared: gateway.shared_for_tests(),
                builders: Arc::new(Builders::new()),
                watcher: graceful.watcher(),
                active: Gauge::default(),
                stop: watch::channel(false).1,
            },
        };
        let conn = ConnInfo {
            listener: "l".into(),
            client: stream.local_addr().unwrap(),
            local: stream.peer_addr().unwrap(),
            scheme: "http",
            client_cert: None,
        };
        let future = job.serve(stream, conn);
        let size = std::mem::size_of_val(&future);
        assert!(size < 4096, "the connection future is {size} bytes");
    }
}
