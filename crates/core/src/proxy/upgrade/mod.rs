//! Protocol upgrades (WebSocket over HTTP/1.1 `Upgrade`): the handshake is proxied
//! like any request, and once both sides answered `101 Switching Protocols` the two
//! connections are joined byte for byte, with an idle timeout, counted while open,
//! and closed when the gateway shuts down.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Idle time after which an upgraded connection with no bytes either way is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the relay waits for the other side once one side has closed.
const HALF_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a client asked to upgrade to, taken from the request before hop-by-hop
/// headers are stripped, with the client side of the connection.
pub struct Requested {
    protocol: HeaderValue,
    client: OnUpgrade,
}

/// The upgrade the request asks for, if it is an HTTP/1.1 `Connection: upgrade`
/// request with an `Upgrade` header (and hyper kept the connection for it).
pub fn requested(parts: &mut http::request::Parts) -> Option<Requested> {
    if parts.version != http::Version::HTTP_11 {
        return None;
    }
    let wants = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let protocol = parts.headers.get(header::UPGRADE)?.clone();
    if !wants {
        return None;
    }
    let client = parts.extensions.remove::<OnUpgrade>()?;
    Some(Requested { protocol, client })
}

impl Requested {
    /// Puts the upgrade headers back on the outgoing request (after hop-by-hop
    /// stripping removed them).
    pub fn restore(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, self.protocol.clone());
    }

    /// If the upstream switched protocols, restores the upgrade headers on its
    /// response and joins the two connections in the background.
    pub fn finish<B>(
        self,
        response: &mut http::Response<B>,
        tunnels: &Tunnels,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return;
        }
        let Some(upstream) = response.extensions_mut().remove::<OnUpgrade>() else {
            return;
        };
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, self.protocol.clone());
        let guard = tunnels.open();
        tokio::spawn(join(self.client, upstream, guard, shutdown));
    }
}

/// Counts upgraded connections (the `meshgate_upgraded_connections` gauge).
#[derive(Debug, Clone)]
pub struct Tunnels(prometheus_client::metrics::gauge::Gauge);

impl Tunnels {
    pub fn new(gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        Tunnels(gauge)
    }

    fn open(&self) -> TunnelGuard {
        self.0.inc();
        TunnelGuard(self.0.clone())
    }
}

/// Decrements the gauge when the tunnel ends, however it ends.
struct TunnelGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn join(
    client: OnUpgrade,
    upstream: OnUpgrade,
    _guard: TunnelGuard,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let client = Activity::new(TokioIo::new(client), started, last.clone());
    let upstream = Activity::new(TokioIo::new(upstream), started, last.clone());
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut upstream_rx, mut upstream_tx) = tokio::io::split(upstream);
    let up = async {
        let r = tokio::io::copy(&mut client_rx, &mut upstream_tx).await;
        let _ = upstream_tx.shutdown().await;
        r
    };
    let down = async {
        let r = tokio::io::copy(&mut upstream_rx, &mut client_tx).await;
        let _ = client_tx.shutdown().await;
        r
    };
    tokio::pin!(up, down);
    let idle = async {
        loop {
            tokio::time::sleep(IDLE_TIMEOUT / 10).await;
            let quiet_since = Duration::from_millis(last.load(Ordering::Relaxed));
            if started.elapsed().saturating_sub(quiet_since) >= IDLE_TIMEOUT {
                tracing::debug!("upgraded connection idle; closing");
                return;
            }
        }
    };
    tokio::pin!(idle);
    // The first side to finish (close, error) ends the relay after a short grace
    // for the other side's last bytes: a peer that closed is not coming back.
    let other_side = tokio::select! {
        _ = &mut up => Side::Down,
        _ = &mut down => Side::Up,
        _ = &mut idle => return,
        _ = shutdown.changed() => return,
    };
    let grace = tokio::time::sleep(HALF_CLOSE_GRACE);
    tokio::select! {
        _ = async { match other_side { Side::Up => { let _ = (&mut up).await; } Side::Down => { let _ = (&mut down).await; } } } => {}
        _ = grace => {}
        _ = shutdown.changed() => {}
    }
}

/// Which direction of the relay is still open.
enum Side {
    Up,
    Down,
}

/// An I/O object that records when bytes last moved, for the idle timeout.
struct Activity<T> {
    io: T,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Activity<T> {
    fn new(io: T, started: Instant, last: Arc<AtomicU64>) -> Self {
        Activity { io, started, last }
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Activity<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
