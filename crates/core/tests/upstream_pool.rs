//! The HTTP/1.1 upstream connection pool, seen from a raw upstream that counts the
//! connections it accepts and which of them close: sequential requests share one
//! connection, a connection the upstream closed while idle is replaced without a
//! failed request, `pool.idleTimeout` closes idle connections, a response the
//! client abandons mid-body does not put its connection back, and
//! `pool.maxIdlePerEndpoint` caps what stays open after a burst.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the raw upstream does after each response.
#[derive(Clone, Copy)]
enum After {
    /// Keeps the connection for the next request.
    KeepAlive,
    /// Closes it 50 ms later, without saying so in the response (an upstream's own
    /// idle timeout racing the gateway's pool).
    CloseSoon,
}

/// Counts of the raw upstream's connections.
#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    closed: AtomicUsize,
}

/// An HTTP/1.1 upstream that answers `GET /` with a small body and `GET /big` with
/// a 4 MiB one, written slowly.
async fn upstream(after: After) -> (SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            c.accepted.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break Some(i + 4);
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => break None,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let Some(end) = head_end else { break };
                    let big = buf.starts_with(b"GET /big ");
                    buf.drain(..end);
                    let written = if big {
                        write_big(&mut sock).await
                    } else {
                        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await
                    };
                    if written.is_err() {
                        break;
                    }
                    if let After::CloseSoon = after {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        break;
                    }
                }
                c.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, counts)
}

async fn write_big(sock: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    let len = 4 << 20;
    sock.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").as_bytes())
        .await?;
    let block = vec![b'x'; 64 << 10];
    for _ in 0..len / block.len() {
        sock.write_all(&block).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn config(addr: SocketAddr, pool: &str) -> String {
    common::one_route(
        "",
        &format!("{}    pool: {pool}\n", common::service("svc", &[addr])),
    )
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let (addr, counts) = upstream(After::KeepAlive).await;
    let h = common::start(&config(addr, "{}")).await;
    for _ in 0..20 {
        let r = h.get("h", "/").await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok"));
    }
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_closed_by_the_upstream_while_idle_is_replaced() {
    let (addr, counts) = upstream(After::CloseSoon).await;
    let h = common::start(&config(addr, "{}")).await;
    for i in 0..5 {
        let r = h.get("h", "/").await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.body);
        // Past the upstream's close: the pooled connection is dead by now.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn idle_timeout_closes_pooled_connections() {
    let (addr, counts) = upstream(After::KeepAlive).await;
    let h = common::start(&config(addr, "{idleTimeout: 300ms}")).await;
    assert_eq!(h.get("h", "/").await.status, StatusCode::OK);
    assert_eq!(counts.closed.load(Ordering::SeqCst), 0);
    common::wait_for(
        "the idle connection to close",
        Duration::from_secs(3),
        || counts.closed.load(Ordering::SeqCst) == 1,
    )
    .await;
    // The next request opens a new connection.
    assert_eq!(h.get("h", "/").await.status, StatusCode::OK);
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_abandoned_response_does_not_return_its_connection() {
    let (addr, counts) = upstream(After::KeepAlive).await;
    let h = common::start(&config(addr, "{}")).await;
    // Read the head of the big response, then hang up mid-body.
    let mut sock = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    sock.write_all(b"GET /big HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1024];
    let n = sock.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    drop(sock);
    common::wait_for(
        "the abandoned connection to close",
        Duration::from_secs(5),
        || counts.closed.load(Ordering::SeqCst) == 1,
    )
    .await;
    let r = h.get("h", "/").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn max_idle_per_endpoint_caps_what_stays_open() {
    let (addr, counts) = upstream(After::KeepAlive).await;
    let h = Arc::new(common::start(&config(addr, "{maxIdlePerEndpoint: 2}")).await);
    // Six requests at once, each holding its connection for the slow big body.
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.get("h", "/big").await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 6);
    // Four went back to a full pool and were closed; two stay for reuse.
    common::wait_for("four connections to close", Duration::from_secs(3), || {
        counts.closed.load(Ordering::SeqCst) == 4
    })
    .await;
    for _ in 0..4 {
        assert_eq!(h.get("h", "/").await.status, StatusCode::OK);
    }
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 6);
    assert_eq!(counts.closed.load(Ordering::SeqCst), 4);
}
