//! One connection of a mesh `HTTP` listener: the mTLS handshake (or, on a
//! `PERMISSIVE` listener, plaintext) in the connection's own task, then HTTP/2 or
//! HTTP/1.1 by ALPN with the verified peer in `ConnInfo.client_cert`.

use std::sync::Arc;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{Accepted, MeshListener};
use crate::proxy::{ConnInfo, Shared};
use crate::server::accept::ConnCtx;

/// A connection of a mesh listener, before its handshake.
pub(crate) struct MeshConn {
    pub mesh: Arc<MeshListener>,
    pub ctx: ConnCtx,
}

impl MeshConn {
    pub(crate) async fn serve(self, stream: TcpStream, mut conn: ConnInfo) {
        let MeshConn {
            mesh,
            ctx:
                ConnCtx {
                    shared,
                    builders,
                    watcher,
                    active,
                    stop,
                },
        } = self;
        match mesh.accept(stream, &shared, conn.client).await {
            Ok(Accepted::Plain(stream)) => {
                http(&builders.auto, None, stream, conn, (shared, watcher, stop)).await;
            }
            Ok(Accepted::Tls(tls, peer)) => {
                conn.client_cert = peer;
                let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                let builder = builders.for_alpn(alpn.as_deref());
                let listener = (shared, watcher, stop);
                http(builder, alpn.as_deref(), *tls, conn, listener).await;
            }
            // Counted and logged by `accept`.
            Err(_) => {}
        }
        active.dec();
    }
}

/// Serves HTTP on `io` until the connection ends (or the drain ends it).
async fn http<IO>(
    builder: &auto::Builder<TokioExecutor>,
    alpn: Option<&[u8]>,
    io: IO,
    conn: ConnInfo,
    (shared, watcher, stop): (Arc<Shared>, Watcher, watch::Receiver<bool>),
) where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let client = conn.client;
    // Mesh authorization: a caller no request could be allowed for is closed now;
    // tracked connections are re-judged (and closed if denied) on config changes.
    let Some(admitted) = crate::mesh_authz::admit(&shared, &conn) else {
        return;
    };
    let io = admitted.wrap(io);
    let http = crate::server::h1::Serve {
        shared,
        builder,
        watcher,
        stop,
        admitted,
    };
    if let Err(e) = crate::server::accept::serve_http(io, alpn, conn, http).await {
        tracing::debug!(error = %e, %client, "connection ended with error");
    }
}
