//! Open connections whose caller has a verified identity (or that came in on a
//! listener with `meshAuthorization`), kept so a config change can re-judge them.
//!
//! Each tracked connection is an [`Entry`] in the gateway-wide [`Registry`] (held
//! weakly there; the connection task and its I/O hold it strongly). Closing one is
//! graceful while hyper serves it (`graceful_shutdown`: HTTP/2 GOAWAY, HTTP/1.1
//! close after the response in flight; in-flight requests get the drain timeout)
//! and immediate once the socket was handed off (an upgraded WebSocket relayed by
//! the proxy, or an L4 tunnel): the [`Revocable`] I/O then shuts the socket and
//! fails every read and write.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use hyper_util::server::graceful::{GracefulConnection, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

const OPEN: u8 = 0;
/// Close once in-flight requests are done (hyper still serves the connection).
const GRACEFUL: u8 = 1;
/// Close now: fail reads and writes.
const NOW: u8 = 2;

/// Every tracked connection of a gateway; survives snapshots.
#[derive(Debug, Default)]
pub struct Registry {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Weak<Entry>>>,
}

impl Registry {
    pub(super) fn register(
        self: &Arc<Self>,
        listener: Arc<str>,
        peer: Option<Box<str>>,
        http: bool,
        grace: Duration,
    ) -> Arc<Entry> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            id,
            listener,
            peer,
            http,
            grace,
            state: AtomicU8::new(OPEN),
            // An L4 stream has no HTTP to finish: its closes are immediate.
            handed_off: AtomicBool::new(!http),
            notify: Notify::new(),
            io_waker: AtomicWaker::new(),
            registry: Arc::downgrade(self),
        });
        self.lock().insert(id, Arc::downgrade(&entry));
        entry
    }

    /// The connections still open.
    pub(super) fn live(&self) -> Vec<Arc<Entry>> {
        self.lock().values().filter_map(Weak::upgrade).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<Entry>>> {
        // A poisoned lock only means a panic elsewhere; the map itself is intact.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One tracked connection.
#[derive(Debug)]
pub struct Entry {
    id: u64,
    pub(super) listener: Arc<str>,
    /// The caller's SPIFFE ID, if its certificate has one.
    pub(super) peer: Option<Box<str>>,
    /// Served as HTTP (else an L4 byte stream).
    pub(super) http: bool,
    /// How long in-flight requests may run once a graceful close began.
    grace: Duration,
    state: AtomicU8,
    handed_off: AtomicBool,
    /// Wakes the task serving the connection when a close is asked for.
    notify: Notify,
    /// Wakes a reader of the connection's I/O (a relay after an upgrade).
    io_waker: AtomicWaker,
    registry: Weak<Registry>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(r) = self.registry.upgrade() {
            r.lock().remove(&self.id);
        }
    }
}

impl Entry {
    /// Asks the connection to close: gracefully while hyper serves it, at once
    /// when its socket was handed off.
    pub fn close(&self) {
        let how = if self.handed_off.load(Ordering::Acquire) {
            NOW
        } else {
            GRACEFUL
        };
        self.state.fetch_max(how, Ordering::AcqRel);
        self.notify.notify_one();
        self.io_waker.wake();
    }

    /// Resolves once a close was asked for.
    pub async fn closing(&self) {
        while self.state.load(Ordering::Acquire) == OPEN {
            self.notify.notified().await;
        }
    }

    /// The serving task let go of the socket (connection done, or upgraded and
    /// relayed elsewhere): from now on a close is immediate.
    fn hand_off(&self) {
        self.handed_off.store(true, Ordering::Release);
        if self.state.load(Ordering::Acquire) != OPEN {
            self.state.store(NOW, Ordering::Release);
            self.io_waker.wake();
        }
    }

    fn closed_now(&self) -> bool {
        self.state.load(Ordering::Acquire) == NOW
    }
}

/// A connection let in: tracked (re-judged on config changes) or not.
#[derive(Debug, Clone)]
pub enum Admitted {
    /// No identity and no `meshAuthorization` on the listener: nothing to re-check.
    Untracked,
    Tracked(Arc<Entry>),
}

impl Admitted {
    /// Wraps the connection's I/O so a close after a hand-off reaches it.
    pub fn wrap<T>(&self, io: T) -> Revocable<T> {
        Revocable {
            io,
            entry: match self {
                Admitted::Untracked => None,
                Admitted::Tracked(e) => Some(e.clone()),
            },
            shut: false,
        }
    }

    /// Serves a hyper connection: like `watcher.watch(conn)` for an untracked
    /// one; a tracked one is also closed gracefully when re-judged as denied (or
    /// drained), in-flight requests getting the entry's grace.
    pub async fn serve<C: GracefulConnection>(
        self,
        watcher: Watcher,
        conn: C,
    ) -> Result<(), C::Error> {
        let entry = match self {
            Admitted::Untracked => return watcher.watch(conn).await,
            Admitted::Tracked(entry) => entry,
        };
        // Held, not used to watch: the listener's drain still waits for this
        // connection; the drain itself reaches it through `MeshAuthz::drain`.
        let _listener = watcher;
        let mut conn = std::pin::pin!(conn);
        let done = tokio::select! {
            r = conn.as_mut() => Some(r),
            _ = entry.closing() => None,
        };
        let result = match done {
            Some(r) => r,
            None => {
                conn.as_mut().graceful_shutdown();
                tokio::time::timeout(entry.grace, conn.as_mut())
                    .await
                    .unwrap_or(Ok(()))
            }
        };
        entry.hand_off();
        result
    }

    /// For meshgate's own HTTP/1.1 server (`server::h1`), which closes gracefully
    /// itself: resolves once a close was asked for (never, if untracked).
    pub(crate) async fn asked_to_close(&self) {
        match self {
            Admitted::Untracked => std::future::pending().await,
            Admitted::Tracked(e) => e.closing().await,
        }
    }

    /// Whether a close was asked for (see `asked_to_close`).
    pub(crate) fn is_closing(&self) -> bool {
        matches!(self, Admitted::Tracked(e) if e.state.load(Ordering::Acquire) != OPEN)
    }

    /// How long the request in flight may run once a close was asked for.
    pub(crate) fn grace(&self) -> Duration {
        match self {
            Admitted::Untracked => Duration::MAX,
            Admitted::Tracked(e) => e.grace,
        }
    }

    /// The HTTP server let go of the connection: a close is immediate from now on.
    pub(crate) fn done(&self) {
        if let Admitted::Tracked(e) = self {
            e.hand_off();
        }
    }

    /// Resolves once the connection is asked to close (never, if untracked): for
    /// L4 tunnels, which close at once.
    pub async fn closing(&self) {
        match self {
            Admitted::Untracked => std::future::pending().await,
            Admitted::Tracked(e) => {
                e.hand_off();
                e.closing().await
            }
        }
    }
}

/// I/O that, once its connection is closed for good, shuts the socket (TLS
/// close_notify, then FIN) and fails every read and write.
#[derive(Debug)]
pub struct Revocable<T> {
    io: T,
    entry: Option<Arc<Entry>>,
    shut: bool,
}

impl<T: AsyncWrite + Unpin> Revocable<T> {
    fn revoked(&self) -> bool {
        self.entry.as_ref().is_some_and(|e| e.closed_now())
    }

    /// Shuts the socket down once, then reports the connection as aborted.
    fn kill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        if !self.shut {
            if Pin::new(&mut self.io).poll_shutdown(cx).is_pending() {
                return Poll::Pending;
            }
            self.shut = true;
        }
        Poll::Ready(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "closed: mesh authorization no longer allows this caller",
        ))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Revocable<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(e) = &self.entry {
            // Registered before the check: a close between the two still wakes us.
            e.io_waker.register(cx.waker());
            if e.closed_now() {
                return self.kill(cx).map(Err);
            }
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Revocable<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.revoked() {
            return self.kill(cx).map(Err);
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.revoked() {
            return self.kill(cx).map(Err);
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.shut {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
