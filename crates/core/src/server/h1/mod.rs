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
mod wire;

pub(crate) use wire::Wire;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::Method;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::accept::proxy_service;
use crate::mesh_authz::Admitted;
use crate::proxy::{ConnInfo, Shared, forward, handle};
use head::{Keep, Parsed};

/// How long a client may take to send a whole head (hyper's setting, the same).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Heads longer than this are left to hyper, which reads up to ~400 KB.
pub const MAX_HEAD: usize = 16 * 1024;
/// What a read asks the connection for.
const READ_CHUNK: usize = 4096;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What this connection's task needs besides its I/O.
pub(crate) struct Serve<'a> {
    pub shared: Arc<Shared>,
    /// hyper's builder for what this server hands over (by ALPN on TLS).
    pub builder: &'a auto::Builder<TokioExecutor>,
    /// Held so the listener's drain waits for this connection.
    pub watcher: Watcher,
    /// Turns true (or closes) when the listener drains.
    pub stop: watch::Receiver<bool>,
    /// Mesh authorization: a tracked connection closes when re-judged as denied.
    pub admitted: Admitted,
}

/// Serves `io` until the client closes it, an error, the drain, or a close asked
/// for by mesh authorization; or hands it to hyper (then until that ends).
pub(crate) async fn serve<IO: Wire>(
    mut io: IO,
    conn: ConnInfo,
    serve: Serve<'_>,
) -> Result<(), BoxError> {
    let Serve {
        shared,
        builder,
        watcher,
        mut stop,
        admitted,
    } = serve;
    // Empty (unallocated on a plain socket) whenever the connection waits.
    let mut buf = BytesMut::new();
    let ended = exchanges(&mut io, &mut buf, &shared, &conn, &mut stop, &admitted).await;
    match ended {
        Ended::Done(result) => {
            admitted.done();
            result
        }
        // For the rest of its life (HTTP/1.x with upgrades, or h2c by the preface).
        Ended::Handoff => {
            let io = prefixed::Prefixed::new(buf.freeze(), io);
            let service = proxy_service(shared, conn);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            Box::pin(admitted.serve(watcher, connection)).await
        }
    }
}

enum Ended {
    Done(Result<(), BoxError>),
    Handoff,
}

/// Request after request on one connection.
async fn exchanges<IO: Wire>(
    io: &mut IO,
    buf: &mut BytesMut,
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    stop: &mut watch::Receiver<bool>,
    admitted: &Admitted,
) -> Ended {
    loop {
        let read = tokio::time::timeout(HEADER_READ_TIMEOUT, read_head(io, buf, stop, admitted));
        let (request, keep) = match read.await {
            Err(_) | Ok(Read::Closed) => return Ended::Done(Ok(())),
            Ok(Read::Request(request, keep)) => (request, keep),
            Ok(Read::Handoff) => return Ended::Handoff,
            Ok(Read::Invalid) => {
                const BAD: &[u8] =
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let written = async {
                    io.write_all(BAD).await?;
                    io.flush().await
                };
                return Ended::Done(written.await.map_err(Into::into));
            }
        };
        let head_request = request.method() == Method::HEAD;
        let trailers = forward::accepts_trailers(request.headers());
        // Boxed: an idle connection's task is not sized for a request in flight.
        let exchange = Box::pin(handle(shared, conn, *request));
        let response = tokio::select! {
            biased;
            response = exchange => response,
            () = client_gone(io, buf) => return Ended::Done(Ok(())),
            () = past_grace(admitted) => return Ended::Done(Ok(())),
        };
        let (head, body) = response.into_parts();
        let close = keep == Keep::Close
            || *stop.borrow()
            || admitted.is_closing()
            || head
                .headers
                .get(http::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let write = encode::write_response(io, head, body, head_request, close, trailers);
        if let Err(e) = Box::pin(write).await {
            return Ended::Done(Err(e.into()));
        }
        if close {
            let _ = io.shutdown().await;
            return Ended::Done(Ok(()));
        }
        if buf.is_empty() {
            *buf = BytesMut::new();
        }
    }
}

/// Resolves once mesh authorization asked this connection to close and the
/// request in flight has had its grace.
async fn past_grace(admitted: &Admitted) {
    admitted.asked_to_close().await;
    tokio::time::sleep(admitted.grace()).await;
}

enum Read {
    Request(Box<http::Request<crate::body::Inbound>>, Keep),
    Handoff,
    Invalid,
    /// The client closed, or a close began while nothing was pending.
    Closed,
}

/// Reads until `buf` starts with a whole head.
async fn read_head<IO: Wire>(
    io: &mut IO,
    buf: &mut BytesMut,
    stop: &mut watch::Receiver<bool>,
    admitted: &Admitted,
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
            match io.read_buf(buf).await {
                Ok(0) | Err(_) => return Read::Closed,
                Ok(_) => continue,
            }
        }
        if *stop.borrow() || admitted.is_closing() {
            return Read::Closed;
        }
        let read = tokio::select! {
            biased;
            read = io.read_idle(buf) => read,
            // Any change means stop; so does a dropped sender.
            _ = stop.changed() => return Read::Closed,
            () = admitted.asked_to_close() => return Read::Closed,
        };
        if let Ok(0) | Err(_) = read {
            return Read::Closed;
        }
    }
}

/// Resolves when the client closes its side while a request is in flight. Bytes
/// it sends meanwhile (pipelined requests) are kept in `buf`, up to a head's worth.
async fn client_gone<IO: Wire>(io: &mut IO, buf: &mut BytesMut) {
    loop {
        if buf.len() >= MAX_HEAD {
            return std::future::pending().await;
        }
        if buf.capacity() == buf.len() {
            buf.reserve(READ_CHUNK);
        }
        match io.read_buf(buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
