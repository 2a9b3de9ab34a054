//! meshgate's own HTTP/1.1 server, for cleartext connections. hyper's server
//! keeps an 8 KB read and an 8 KB write buffer per connection for as long as it is
//! open; this one holds no buffer while a keep-alive connection waits (it reads
//! once the socket is readable), answers with one write per small response, and
//! calls the proxy without a dispatcher in between.
//!
//! It serves the common case only, and hands everything else to hyper with the
//! bytes read so far ([`prefixed`]): HTTP/1.0, HTTP/2 (h2c prior knowledge),
//! upgrades and `CONNECT`, chunked request bodies, `expect: 100-continue`, bodies
//! that did not arrive with their head, heads over [`MAX_HEAD`] or that httparse
//! refuses (hyper then answers them as it always did). Once handed over, the
//! connection stays with hyper until it closes.
//!
//! Like hyper's: a head must arrive within [`HEADER_READ_TIMEOUT`] of waiting for
//! it; a client that closes (or half-closes) while its request is in flight
//! cancels it; a drain closes idle connections at once and the others after their
//! current response (`connection: close`).

mod encode;
mod head;
mod prefixed;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::Method;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::accept::{Builders, proxy_service};
use crate::proxy::{ConnInfo, Shared, forward, handle};
use head::{Keep, Parsed};

/// How long a client may take to send a whole head (hyper's setting, the same).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Heads longer than this are left to hyper, which reads up to ~400 KB.
pub const MAX_HEAD: usize = 16 * 1024;
/// What a read asks the socket for.
const READ_CHUNK: usize = 4096;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What this connection's task needs besides its socket.
pub(crate) struct Serve<'a> {
    pub shared: Arc<Shared>,
    pub builders: &'a Builders,
    /// Held so the listener's drain waits for this connection.
    pub watcher: Watcher,
    /// Turns true (or closes) when the listener drains.
    pub stop: watch::Receiver<bool>,
}

/// Serves `stream` until the client closes it, an error, or the drain.
pub(crate) async fn serve(
    mut stream: TcpStream,
    conn: ConnInfo,
    serve: Serve<'_>,
) -> Result<(), BoxError> {
    let Serve {
        shared,
        builders,
        watcher,
        mut stop,
    } = serve;
    // Empty (unallocated) whenever the connection waits for a request.
    let mut buf = BytesMut::new();
    loop {
        let read = tokio::time::timeout(
            HEADER_READ_TIMEOUT,
            read_head(&mut stream, &mut buf, &mut stop),
        );
        let (request, keep) = match read.await {
            Err(_) | Ok(Read::Closed) => return Ok(()),
            Ok(Read::Request(request, keep)) => (request, keep),
            Ok(Read::Handoff) => {
                let handed = handoff(stream, buf, shared, conn, builders, watcher);
                return Box::pin(handed).await;
            }
            Ok(Read::Invalid) => {
                const BAD: &[u8] =
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                stream.write_all(BAD).await?;
                return Ok(());
            }
        };
        let head_request = request.method() == Method::HEAD;
        let trailers = forward::accepts_trailers(request.headers());
        // Boxed: an idle connection's task is not sized for a request in flight.
        let exchange = Box::pin(handle(&shared, &conn, *request));
        let response = tokio::select! {
            biased;
            response = exchange => response,
            () = client_gone(&mut stream, &mut buf) => return Ok(()),
        };
        let (head, body) = response.into_parts();
        let close = keep == Keep::Close
            || *stop.borrow()
            || head
                .headers
                .get(http::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let write = encode::write_response(&mut stream, head, body, head_request, close, trailers);
        Box::pin(write).await?;
        if close {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        if buf.is_empty() {
            buf = BytesMut::new();
        }
    }
}

enum Read {
    Request(Box<http::Request<crate::body::Inbound>>, Keep),
    Handoff,
    Invalid,
    /// The client closed, or the drain began while nothing was pending.
    Closed,
}

/// Reads until `buf` starts with a whole head. With nothing buffered it first
/// waits for the socket to be readable, so a waiting connection holds no buffer.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    stop: &mut watch::Receiver<bool>,
) -> Read {
    loop {
        if !buf.is_empty() {
            match head::parse(buf) {
                Parsed::Request(request, keep) => return Read::Request(request, keep),
                Parsed::Partial if buf.len() < MAX_HEAD => {}
                Parsed::Partial | Parsed::Handoff => return Read::Handoff,
                Parsed::Invalid => return Read::Invalid,
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            match stream.read_buf(buf).await {
                Ok(0) | Err(_) => return Read::Closed,
                Ok(_) => continue,
            }
        }
        if *stop.borrow() {
            return Read::Closed;
        }
        tokio::select! {
            biased;
            ready = stream.readable() => if ready.is_err() { return Read::Closed },
            // Any change means stop; so does a dropped sender.
            _ = stop.changed() => return Read::Closed,
        }
        buf.reserve(READ_CHUNK);
        match stream.try_read_buf(buf) {
            Ok(0) => return Read::Closed,
            Ok(_) => {}
            // The readiness was stale: wait again, without the buffer.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => *buf = BytesMut::new(),
            Err(_) => return Read::Closed,
        }
    }
}

/// Resolves when the client closes its side while a request is in flight. Bytes
/// it sends meanwhile (pipelined requests) are kept in `buf`, up to a head's worth.
async fn client_gone(stream: &mut TcpStream, buf: &mut BytesMut) {
    loop {
        if buf.len() >= MAX_HEAD {
            return std::future::pending().await;
        }
        if buf.capacity() == buf.len() {
            buf.reserve(READ_CHUNK);
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Gives the connection, with what was read of it, to hyper for the rest of its
/// life (its auto builder: HTTP/1.x with upgrades, or h2c by the preface).
async fn handoff(
    stream: TcpStream,
    buf: BytesMut,
    shared: Arc<Shared>,
    conn: ConnInfo,
    builders: &Builders,
    watcher: Watcher,
) -> Result<(), BoxError> {
    let io = prefixed::Prefixed::new(buf.freeze(), stream);
    let service = proxy_service(shared, conn);
    let connection = builders
        .auto
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    watcher.watch(connection).await
}
