//! Circuit breaking: per-service limits that shed load at once (503, reason
//! `overflow`) instead of queueing it behind a struggling upstream.
//!
//! - `maxRequests`: requests in flight, from the start of `send` until the response
//!   body is finished or dropped (an [`OwnedPermit`], held with the response body).
//! - `maxPendingRequests`: tries waiting for response headers.
//! - `maxRetries`: retries in flight (a request holds at most one retry slot, from
//!   its first retry until it returns). Over it, the retry is skipped and the
//!   client gets the try's own answer (not a 503): the limit exists to stop retry
//!   storms, not to turn upstream errors into gateway errors.
//! - `maxConnections`: open upstream connections, idle pooled ones included,
//!   enforced by [`LimitedConnector`] around the `HttpConnector`: its IO type gives
//!   the slot back when the connection is dropped. At the limit a connect fails at
//!   once with [`ConnectionOverflow`], which [`is_overflow`] recognises.
//!
//! Every limit is an atomic counter: `fetch_add`, check, undo on overflow; no locks.
//! Each overflow increments `meshgate_circuit_breaker_overflows{service, kind}`
//! where kind is the limit's name (`max_requests`, …).

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use meshgate_config as config;
use meshgate_observe::Metrics;
use meshgate_observe::metrics::{KindLabels, Name};
use prometheus_client::metrics::counter::Counter;
use tower::Service;

use crate::rescue::ProxyError;

/// One counted limit.
#[derive(Debug)]
pub struct Limit {
    current: AtomicU32,
    max: u32,
    overflows: Counter,
}

impl Limit {
    fn new(max: u32, metrics: &Metrics, service: &Name, kind: &'static str) -> Self {
        let labels = KindLabels {
            service: service.clone(),
            kind,
        };
        Self {
            current: AtomicU32::new(0),
            max,
            // A handle on the series: incrementing it takes no lock.
            overflows: metrics.overflows.get_or_create(&labels).clone(),
        }
    }

    /// Takes a slot, or counts an overflow.
    fn take(&self) -> bool {
        if self.current.fetch_add(1, Relaxed) < self.max {
            return true;
        }
        self.current.fetch_sub(1, Relaxed);
        self.overflows.inc();
        false
    }

    /// Slots taken now.
    pub fn current(&self) -> u32 {
        self.current.load(Relaxed)
    }
}

/// A service's request, pending and retry limits.
#[derive(Debug)]
pub struct Breaker {
    pub(super) requests: Arc<Limit>,
    pending: Limit,
    retries: Limit,
}

impl Breaker {
    /// The breaker and the connection limit (for [`LimitedConnector`]) of a service.
    pub fn new(
        c: &config::CircuitBreaker,
        metrics: &Metrics,
        service: &Name,
    ) -> (Self, Arc<Limit>) {
        let limit = |max, kind| Limit::new(max, metrics, service, kind);
        let breaker = Breaker {
            requests: Arc::new(limit(c.max_requests, "max_requests")),
            pending: limit(c.max_pending_requests, "max_pending_requests"),
            retries: limit(c.max_retries, "max_retries"),
        };
        (
            breaker,
            Arc::new(limit(c.max_connections, "max_connections")),
        )
    }

    /// A slot for a whole request, response body included.
    pub fn request(&self) -> Result<OwnedPermit, ProxyError> {
        OwnedPermit::take(&self.requests).ok_or(ProxyError::Overflow)
    }

    /// A slot for one try until its response headers arrive.
    pub fn pending(&self) -> Result<Permit<'_>, ProxyError> {
        self.pending
            .take()
            .then(|| Permit(&self.pending))
            .ok_or(ProxyError::Overflow)
    }

    /// A retry slot; `None` (counted as an overflow) when retries are at the limit.
    pub fn retry(&self) -> Option<Permit<'_>> {
        self.retries.take().then(|| Permit(&self.retries))
    }
}

/// A slot that can move between tasks (a request's, or a connection's); given
/// back when dropped.
#[derive(Debug)]
#[must_use = "the slot is given back when the permit is dropped"]
pub struct OwnedPermit(Arc<Limit>);

impl OwnedPermit {
    fn take(limit: &Arc<Limit>) -> Option<Self> {
        limit.take().then(|| OwnedPermit(Arc::clone(limit)))
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Relaxed);
    }
}

/// A pending-request or retry slot; given back when dropped.
#[derive(Debug)]
#[must_use = "the slot is given back when the permit is dropped"]
pub struct Permit<'a>(&'a Limit);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Relaxed);
    }
}

/// A connect refused because the service has `maxConnections` open.
#[derive(Debug, thiserror::Error)]
#[error("circuit breaker: the service has maxConnections upstream connections open")]
pub struct ConnectionOverflow;

/// Whether a client error was caused by [`ConnectionOverflow`].
pub fn is_overflow(e: &(dyn StdError + 'static)) -> bool {
    std::iter::successors(Some(e), |&c| c.source()).any(|c| c.is::<ConnectionOverflow>())
}

/// An `HttpConnector` that counts open connections against `maxConnections`.
#[derive(Debug, Clone)]
pub struct LimitedConnector {
    inner: HttpConnector,
    limit: Arc<Limit>,
}

impl LimitedConnector {
    pub fn new(inner: HttpConnector, limit: Arc<Limit>) -> Self {
        Self { inner, limit }
    }
}

type BoxError = Box<dyn StdError + Send + Sync>;
type Io = <HttpConnector as Service<Uri>>::Response;

impl Service<Uri> for LimitedConnector {
    type Response = CountedIo<Io>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        // Taken before the future runs, so a connect that fails or is abandoned
        // gives its slot back when the future is dropped.
        let Some(slot) = OwnedPermit::take(&self.limit) else {
            return Box::pin(std::future::ready(Err(ConnectionOverflow.into())));
        };
        let connecting = self.inner.call(dst);
        Box::pin(async move {
            let io = connecting.await?;
            Ok(CountedIo { io, _slot: slot })
        })
    }
}

/// An upstream connection holding its `maxConnections` slot until dropped.
#[derive(Debug)]
pub struct CountedIo<T> {
    io: T,
    _slot: OwnedPermit,
}

impl<T: Read + Unpin> Read for CountedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for CountedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for CountedIo<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}
