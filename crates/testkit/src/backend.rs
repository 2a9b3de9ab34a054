//! A real HTTP/1.1 + h2c backend for tests and the demo. It answers every request
//! with a JSON echo of what it received, unless a path segment asks for something
//! else (anywhere in the path, so `/orders/status/503` works behind a prefix route):
//!
//! - `/status/{code}`: answer with that status;
//! - `/sleep/{ms}`: wait, then echo;
//! - `/bytes/{n}`: stream `n` bytes (64 KiB chunks) without holding them;
//! - `/drop`: close the connection without answering (a reset to the proxy).
//!
//! A `Behaviour` set on the backend can fail the first N requests (503) first.
//! Request bodies are read and counted as they stream, never held.
//!
//! Requests with `user-agent: meshgate-health` are the gateway's active health
//! checks: they are counted by [`Backend::health_checks`], not by
//! [`Backend::hits`], never consume `fail_first`, and answer 503 while
//! [`Backend::set_health_failing`] is on (other requests are served as usual).
//!
//! [`Backend::start_tls`] serves the same over TLS with a given rustls config (its
//! ALPN decides h2 or HTTP/1.1); the echo then has a `tls` object with the client's
//! `sni`, the negotiated `alpn` and whether it presented a `clientCert`. Failed
//! handshakes are counted by [`Backend::tls_failures`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Scripted misbehaviour.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Answer 503 to this many requests before behaving.
    pub fail_first: usize,
    /// Wait this long before every answer (a slow replica).
    pub delay: Duration,
}

/// A running backend. Dropping it stops it.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    hits: Arc<AtomicUsize>,
    health: Arc<HealthChecks>,
    tls_failures: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
}

/// Health-check requests seen, and whether to fail them.
#[derive(Debug, Default)]
struct HealthChecks {
    seen: AtomicUsize,
    failing: AtomicBool,
}

type State = (String, Behaviour, Arc<AtomicUsize>, Arc<HealthChecks>);

type BoxedBody = BoxBody<Bytes, std::io::Error>;

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Self::start_with(name, Behaviour::default()).await
    }

    pub async fn start_with(name: &str, behaviour: Behaviour) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::serve(listener, name, behaviour, None)
    }

    /// Serves over TLS with `config` (e.g. `Issued::server_config(&["h2", "http/1.1"])`
    /// from `certs`, or one that requires client certificates).
    pub async fn start_tls(name: &str, config: Arc<rustls::ServerConfig>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::serve(
            listener,
            name,
            Behaviour::default(),
            Some(TlsAcceptor::from(config)),
        )
    }

    /// Serves on a given address (the demo uses fixed ports when it can).
    pub async fn start_on(addr: SocketAddr, name: &str) -> std::io::Result<Backend> {
        Ok(Self::serve(
            TcpListener::bind(addr).await?,
            name,
            Behaviour::default(),
            None,
        ))
    }

    fn serve(
        listener: TcpListener,
        name: &str,
        behaviour: Behaviour,
        tls: Option<TlsAcceptor>,
    ) -> Backend {
        let addr = listener.local_addr().expect("bound address");
        let hits = Arc::new(AtomicUsize::new(0));
        let tls_failures = Arc::new(AtomicUsize::new(0));
        let failures = tls_failures.clone();
        let health = Arc::new(HealthChecks::default());
        let (stop, mut stopped) = watch::channel(false);
        let state = Arc::new((name.to_owned(), behaviour, hits.clone(), health.clone()));
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = stopped.changed() => break,
                };
                let state = state.clone();
                let stop_conn = stopped.clone();
                let Some(acceptor) = tls.clone() else {
                    tokio::spawn(serve_conn(stream, state, peer, None, stop_conn));
                    continue;
                };
                let failures = failures.clone();
                tokio::spawn(async move {
                    match acceptor.accept(stream).await {
                        Ok(stream) => {
                            let (_, session) = stream.get_ref();
                            let facts = serde_json::json!({
                                "sni": session.server_name(),
                                "alpn": session.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
                                "clientCert": session.peer_certificates().is_some_and(|c| !c.is_empty()),
                            });
                            serve_conn(stream, state, peer, Some(Arc::new(facts)), stop_conn).await;
                        }
                        Err(_) => {
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        Backend {
            addr,
            name: name.to_owned(),
            hits,
            health,
            tls_failures,
            stop,
        }
    }

    /// TLS handshakes that failed (bad client certificate, unknown CA, …); 0 for
    /// a plain backend.
    pub fn tls_failures(&self) -> usize {
        self.tls_failures.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Health-check requests (`user-agent: meshgate-health`) received so far.
    pub fn health_checks(&self) -> usize {
        self.health.seen.load(Ordering::SeqCst)
    }

    /// While `true`, health-check requests get 503; other requests are unaffected.
    pub fn set_health_failing(&self, failing: bool) {
        self.health.failing.store(failing, Ordering::SeqCst);
    }

    /// Stops accepting and closes open connections.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves HTTP/1.1 or HTTP/2 (detected) on one accepted connection until it ends or
/// the backend stops.
async fn serve_conn<IO>(
    io: IO,
    state: Arc<State>,
    peer: SocketAddr,
    tls: Option<Arc<serde_json::Value>>,
    mut stop: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| answer(state.clone(), peer, tls.clone(), req));
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        _ = conn => {}
        _ = stop.changed() => {}
    }
}

async fn answer(
    state: Arc<State>,
    peer: SocketAddr,
    tls: Option<Arc<serde_json::Value>>,
    req: Request<Incoming>,
) -> Result<Response<BoxedBody>, std::io::Error> {
    let (name, behaviour, hits, health) = (&state.0, &state.1, &state.2, &state.3);
    let user_agent = req.headers().get("user-agent");
    if user_agent.is_some_and(|ua| ua.as_bytes() == b"meshgate-health") {
        health.seen.fetch_add(1, Ordering::SeqCst);
        return Ok(if health.failing.load(Ordering::SeqCst) {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{name}: unhealthy\n"),
            )
        } else {
            text(StatusCode::OK, format!("{name}: ok\n"))
        });
    }
    let n = hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // A keyword counts only with its numeric argument (`/drop` only as the last
    // segment), so ordinary paths such as `/api/status` are still echoed.
    let numeric = |i: usize| {
        segments
            .get(i + 1)
            .is_some_and(|a| a.parse::<u64>().is_ok())
    };
    let keyword = segments.iter().enumerate().position(|(i, s)| {
        matches!(*s, "status" | "sleep" | "bytes") && numeric(i)
            || *s == "drop" && i + 1 == segments.len()
    });
    let first = keyword.map_or("", |i| segments[i]);
    let second = keyword
        .and_then(|i| segments.get(i + 1))
        .copied()
        .unwrap_or("");
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    if n < behaviour.fail_first {
        return Ok(text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{name}: failing request {}\n", n + 1),
        ));
    }
    match first {
        "status" => {
            let code = second
                .parse()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_REQUEST);
            return Ok(text(code, format!("{name}: status {code}\n")));
        }
        "sleep" => tokio::time::sleep(Duration::from_millis(second.parse().unwrap_or(0))).await,
        "bytes" => return Ok(stream_bytes(second.parse().unwrap_or(0))),
        "drop" => return Err(std::io::Error::other("dropping the connection on purpose")),
        _ => {}
    }
    let (parts, mut body) = req.into_parts();
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(std::io::Error::other)?.into_data() {
            body_bytes += data.len() as u64;
        }
    }
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or("<binary>").into(),
            )
        })
        .collect();
    let mut echo = serde_json::json!({
        "backend": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        // HTTP/2's `:authority` (HTTP/1.1 has only the Host header).
        "authority": parts.uri.authority().map(|a| a.as_str()),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "bodyBytes": body_bytes,
        "peer": peer.to_string(),
    });
    if let Some(tls) = tls {
        echo["tls"] = (*tls).clone();
    }
    let mut resp = text(StatusCode::OK, format!("{echo}\n"));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    resp.headers_mut().insert(
        "x-backend",
        name.parse()
            .unwrap_or_else(|_| "?".parse().expect("static")),
    );
    Ok(resp)
}

fn text(status: StatusCode, body: String) -> Response<BoxedBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp
}

fn stream_bytes(total: u64) -> Response<BoxedBody> {
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK as usize]);
    let chunks = stream::iter((0..total.div_ceil(CHUNK)).map(move |i| {
        let len = CHUNK.min(total - i * CHUNK) as usize;
        Ok::<_, std::io::Error>(Frame::data(chunk.slice(..len)))
    }));
    let mut resp = Response::new(StreamBody::new(chunks).boxed());
    resp.headers_mut().insert("content-length", total.into());
    resp
}
