//! Copying bytes both ways between a client and an upstream connection, counting
//! them (live, into the listener's byte counters), closing after an idle period
//! with no bytes either way, or when the listener's drain time is up.
//!
//! A direction that reaches end of stream half-closes the other side (so protocols
//! that signal "done" with a FIN keep working) while the other direction goes on; an
//! error in either direction ends both.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

/// Bytes read from one side per read; one buffer per direction per connection.
const BUF: usize = 16 * 1024;

/// How a proxied connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides finished (end of stream each way).
    Closed,
    /// No bytes either way for the idle timeout.
    Idle,
    /// The client reset the connection (or writing to it failed).
    ClientReset,
    /// The upstream reset the connection (or writing to it failed).
    UpstreamReset,
    /// The listener stopped and its drain timeout passed.
    Drained,
}

impl End {
    /// The access log's `reason` (none for a normal close).
    pub fn reason(self) -> Option<&'static str> {
        match self {
            End::Closed => None,
            End::Idle => Some("idle_timeout"),
            End::ClientReset => Some("client_reset"),
            End::UpstreamReset => Some("upstream_reset"),
            End::Drained => Some("drain_timeout"),
        }
    }
}

/// Byte counts of a connection: `bytes_in` from the client, `bytes_out` to it.
#[derive(Debug, Default)]
pub struct Counts {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// The listener-wide byte counters, resolved once per listener.
#[derive(Debug, Clone)]
pub struct ByteMetrics {
    pub bytes_in: Counter,
    pub bytes_out: Counter,
}

/// Milliseconds since `start` at the last byte moved, either way.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Relaxed);
    }

    /// Completes once `idle` has passed with no `touch`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Which side an IO error came from.
#[derive(Debug, Clone, Copy)]
enum Side {
    Client,
    Upstream,
}

/// Proxies between `client` and `upstream` until both are done, one fails, the
/// connection is idle for `idle`, or `drained` turns true. Bytes are added to
/// `counts` and `metrics` as they move.
pub async fn pipe<C, U>(
    client: C,
    upstream: U,
    idle: Duration,
    counts: &Counts,
    metrics: &ByteMetrics,
    drained: &mut watch::Receiver<bool>,
) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut upstream_r, mut upstream_w) = tokio::io::split(upstream);
    let to_upstream = one_way(
        &mut client_r,
        &mut upstream_w,
        (Side::Client, Side::Upstream),
        &counts.bytes_in,
        &metrics.bytes_in,
        &activity,
    );
    let to_client = one_way(
        &mut upstream_r,
        &mut client_w,
        (Side::Upstream, Side::Client),
        &counts.bytes_out,
        &metrics.bytes_out,
        &activity,
    );
    let both = async { tokio::try_join!(to_upstream, to_client) };
    tokio::select! {
        done = both => match done {
            Ok(_) => End::Closed,
            Err(Side::Client) => End::ClientReset,
            Err(Side::Upstream) => End::UpstreamReset,
        },
        () = activity.idle_for(idle) => End::Idle,
        Ok(_) = drained.wait_for(|d| *d) => End::Drained,
    }
}

/// Copies `from` → `to` until end of stream, then shuts `to` down for writing.
/// `sides` says who is read and who is written, for the error.
async fn one_way<R, W>(
    from: &mut R,
    to: &mut W,
    sides: (Side, Side),
    count: &AtomicU64,
    metric: &Counter,
    activity: &Activity,
) -> Result<(), Side>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = from.read(&mut buf).await.map_err(|_| sides.0)?;
        if n == 0 {
            // A peer that already went away cannot be half-closed; that is fine.
            let _ = to.shutdown().await;
            return Ok(());
        }
        activity.touch();
        to.write_all(&buf[..n]).await.map_err(|_| sides.1)?;
        activity.touch();
        count.fetch_add(n as u64, Relaxed);
        metric.inc_by(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn metrics() -> ByteMetrics {
        ByteMetrics {
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
        }
    }

    #[tokio::test]
    async fn copies_both_ways_and_counts() {
        let (client, mut client_peer) = duplex(64);
        let (upstream, mut upstream_peer) = duplex(64);
        let counts = Counts::default();
        let m = metrics();
        let (_tx, mut rx) = watch::channel(false);
        let peers = async {
            client_peer.write_all(b"hello upstream").await.unwrap();
            client_peer.shutdown().await.unwrap();
            let mut got = Vec::new();
            upstream_peer.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"hello upstream");
            upstream_peer.write_all(b"hi").await.unwrap();
            upstream_peer.shutdown().await.unwrap();
            let mut back = Vec::new();
            client_peer.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, b"hi");
        };
        let (end, ()) = tokio::join!(
            pipe(
                client,
                upstream,
                Duration::from_secs(5),
                &counts,
                &m,
                &mut rx
            ),
            peers
        );
        assert_eq!(end, End::Closed);
        assert_eq!(counts.bytes_in.load(Relaxed), 14);
        assert_eq!(counts.bytes_out.load(Relaxed), 2);
        assert_eq!((m.bytes_in.get(), m.bytes_out.get()), (14, 2));
    }

    #[tokio::test]
    async fn idle_connection_ends_after_the_timeout_not_before() {
        let (client, mut client_peer) = duplex(64);
        let (upstream, _upstream_peer) = duplex(64);
        let counts = Counts::default();
        let (_tx, mut rx) = watch::channel(false);
        let started = Instant::now();
        let talk = async {
            // Activity every 150 ms keeps a 300 ms idle timeout from firing.
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                client_peer.write_all(b"x").await.unwrap();
            }
        };
        let m = metrics();
        let (end, ()) = tokio::join!(
            pipe(
                client,
                upstream,
                Duration::from_millis(300),
                &counts,
                &m,
                &mut rx
            ),
            talk
        );
        assert_eq!(end, End::Idle);
        // The last byte moved at ~450 ms, so it cannot have ended before ~750 ms.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(700), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(counts.bytes_in.load(Relaxed), 3);
    }

    #[tokio::test]
    async fn drain_signal_ends_the_connection() {
        let (client, _c) = duplex(64);
        let (upstream, _u) = duplex(64);
        let counts = Counts::default();
        let (tx, mut rx) = watch::channel(false);
        tx.send(true).unwrap();
        let end = pipe(
            client,
            upstream,
            Duration::from_secs(60),
            &counts,
            &metrics(),
            &mut rx,
        )
        .await;
        assert_eq!(end, End::Drained);
    }
}
