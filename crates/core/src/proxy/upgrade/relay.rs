//! The relay of an upgraded connection: both sides' bytes copied both ways until
//! one side closes (then a short grace for the other's last bytes), no byte moved
//! for the idle timeout, or the gateway shuts down.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::TunnelGuard;

/// How long the relay waits for the other side once one side has closed.
const HALF_CLOSE_GRACE: Duration = Duration::from_secs(1);

pub(super) async fn join(
    client: OnUpgrade,
    upstream: OnUpgrade,
    _guard: TunnelGuard,
    idle_timeout: Duration,
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
    // Checked ten times per period: a quiet connection closes between 1 and 1.1
    // idle periods after its last byte, without a timer reset per read.
    let idle = async {
        loop {
            tokio::time::sleep(idle_timeout / 10).await;
            let quiet_since = Duration::from_millis(last.load(Ordering::Relaxed));
            if started.elapsed().saturating_sub(quiet_since) >= idle_timeout {
                tracing::debug!(?idle_timeout, "upgraded connection idle; closing");
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
