//! The keep-alive pool of a service's HTTP/1.1 connections (plain or TLS), on
//! hyper's connection API.
//!
//! Why not hyper-util's pooled client: per request it clones itself, builds a lazy
//! connect future it usually drops, hashes the pool key with SipHash under a lock,
//! and spawns a task that waits for the connection to become idle again. Here a
//! request takes an idle connection (LIFO, so the warmest one) from its endpoint's
//! list, and the connection goes back when the response body reaches its end
//! ([`PooledBody`]): no task per request, one short lock on each side.
//!
//! Connections are pooled per worker thread (thread-per-core mode) and endpoint.
//! A connection is dropped instead of pooled when its response body is not read to
//! the end, when it has been idle longer than `pool.idleTimeout` (a sweeper task,
//! started with the first connection, closes those), or when its endpoint already
//! has `pool.maxIdlePerEndpoint` idle. A request that finds its pooled connection
//! closed before anything was written goes out on another one.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper::rt::{Read, Write};
use tower::{Service, ServiceExt};

use crate::body::Body;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a request got no response from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection: refused, timed out, over `maxConnections`, TLS handshake.
    #[error("connecting upstream: {0}")]
    Connect(#[source] BoxError),
    /// The connection failed while the request was sent or the response read.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// From hyper-util's client (HTTP/2 services).
    #[error(transparent)]
    Client(#[from] hyper_util::client::legacy::Error),
}

impl SendError {
    /// Whether no connection could be made (the request was never sent).
    pub fn is_connect(&self) -> bool {
        match self {
            SendError::Connect(_) => true,
            SendError::Http(_) => false,
            SendError::Client(e) => e.is_connect(),
        }
    }
}

/// The HTTP/1.1 pool of one service, dialing through `connector`.
#[derive(Debug)]
pub struct Http1Pool<C> {
    connector: C,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Keyed by worker thread (`crate::workers::current`) and endpoint: a
    /// connection's task runs on the worker that opened it, so a request on
    /// another worker would wake that one for every read and write.
    idle: Mutex<HashMap<(usize, Authority), Vec<Idle>, foldhash::fast::RandomState>>,
    idle_timeout: Duration,
    max_idle: usize,
    sweeping: AtomicBool,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl<C> Http1Pool<C>
where
    C: Service<Uri, Error = BoxError> + Clone + Send + 'static,
    C::Response: Read + Write + Unpin + Send + 'static,
    C::Future: Send,
{
    pub fn new(connector: C, idle_timeout: Duration, max_idle: usize) -> Self {
        Http1Pool {
            connector,
            shared: Arc::new(Shared {
                idle: Mutex::new(HashMap::default()),
                idle_timeout,
                max_idle,
                sweeping: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `req` (absolute URI: its authority picks the endpoint; sent in origin
    /// form) on an idle connection to that endpoint, or a new one.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<Body>, SendError> {
        let dst = req.uri().clone();
        let Some(key) = dst
            .authority()
            .map(|a| (crate::workers::current(), a.clone()))
        else {
            return Err(SendError::Connect(
                "request URI without an authority".into(),
            ));
        };
        *req.uri_mut() = dst
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| pq.clone().into());
        // No connection can be reused after these: hyper hands it to the upgrade.
        let upgrading =
            req.method() == Method::CONNECT || req.headers().contains_key(http::header::UPGRADE);
        loop {
            let (mut sender, reused) = match self.checkout(&key).await {
                Some(sender) => (sender, true),
                None => (self.connect(&dst).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let pooled = (!upgrading && resp.status() != StatusCode::SWITCHING_PROTOCOLS)
                        .then(|| Checkout {
                            shared: self.shared.clone(),
                            key,
                            sender,
                        });
                    return Ok(resp.map(|body| PooledBody::wrap(body, pooled)));
                }
                Err(mut e) => match e.take_message() {
                    // Closed by the upstream while idle, nothing written: another
                    // connection can take it (a fresh one fails for real).
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// The most recently pooled live connection to `key`, once it is ready.
    async fn checkout(&self, key: &(usize, Authority)) -> Option<SendRequest<Body>> {
        loop {
            let idle = {
                let mut pool = self.shared.idle.lock().unwrap_or_else(|p| p.into_inner());
                pool.get_mut(key)?.pop()?
            };
            if idle.sender.is_closed() || idle.since.elapsed() > self.shared.idle_timeout {
                continue;
            }
            let mut sender = idle.sender;
            // Pooled when its response ended: ready as soon as hyper's connection
            // task has seen that end (at once, or after one turn of it).
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    async fn connect(&self, dst: &Uri) -> Result<SendRequest<Body>, SendError> {
        let io = self
            .connector
            .clone()
            .oneshot(dst.clone())
            .await
            .map_err(SendError::Connect)?;
        let (sender, conn) = Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        if !self.shared.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(&self.shared)));
        }
        Ok(sender)
    }
}

/// Closes connections idle past the timeout, until the pool is dropped.
async fn sweep(shared: Weak<Shared>) {
    let period = match shared.upgrade() {
        Some(s) => (s.idle_timeout / 2).max(Duration::from_millis(100)),
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut pool = shared.idle.lock().unwrap_or_else(|p| p.into_inner());
        pool.retain(|_, list| {
            list.retain(|i| !i.sender.is_closed() && i.since.elapsed() <= shared.idle_timeout);
            !list.is_empty()
        });
    }
}

/// A connection lent to one request; back in the pool when its response ends.
#[derive(Debug)]
struct Checkout {
    shared: Arc<Shared>,
    key: (usize, Authority),
    sender: SendRequest<Body>,
}

impl Checkout {
    fn put_back(self) {
        if self.sender.is_closed() {
            return;
        }
        let mut pool = self.shared.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = pool.entry(self.key).or_default();
        if list.len() < self.shared.max_idle {
            list.push(Idle {
                sender: self.sender,
                since: Instant::now(),
            });
        }
    }
}

/// An upstream response body that returns its connection to the pool when it ends.
#[derive(Debug)]
pub struct PooledBody {
    inner: Incoming,
    conn: Option<Checkout>,
}

impl PooledBody {
    fn wrap(inner: Incoming, conn: Option<Checkout>) -> Body {
        let mut body = PooledBody { inner, conn };
        body.release_if_ended();
        Body::Pooled(Box::new(body))
    }

    fn release_if_ended(&mut self) {
        if http_body::Body::is_end_stream(&self.inner)
            && let Some(conn) = self.conn.take()
        {
            conn.put_back();
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(conn) = this.conn.take() {
                    conn.put_back();
                }
            }
            Poll::Ready(Some(Ok(_))) => this.release_if_ended(),
            // A broken body: the connection is not reused.
            Poll::Ready(Some(Err(_))) => this.conn = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Unread bytes left: the connection cannot carry another request.
        self.release_if_ended();
    }
}
