//! One connection of a mesh `HTTP` listener: the mTLS handshake (or, on a
//! `PERMISSIVE` listener, plaintext) in the connection's own task, then HTTP/2 or
//! HTTP/1.1 by ALPN with the verified peer in `ConnInfo.client_cert`.

use std::sync::Arc;

use tokio::net::TcpStream;

use super::{Accepted, MeshListener};
use crate::proxy::ConnInfo;
use crate::server::accept::{ConnCtx, serve_handshaken};

/// A connection of a mesh listener, before its handshake.
pub(crate) struct MeshConn {
    pub mesh: Arc<MeshListener>,
    pub ctx: ConnCtx,
}

impl MeshConn {
    pub(crate) async fn serve(self, stream: TcpStream, mut conn: ConnInfo) {
        let MeshConn { mesh, ctx } = self;
        let (listener, active) = ctx.split();
        let shared = listener.shared.clone();
        match mesh.accept(stream, &shared, conn.client).await {
            Ok(Accepted::Plain(stream)) => serve_handshaken(stream, None, conn, listener).await,
            Ok(Accepted::Tls(tls, peer)) => {
                conn.client_cert = peer;
                let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                serve_handshaken(*tls, alpn.as_deref(), conn, listener).await;
            }
            // Counted and logged by `accept`.
            Err(_) => {}
        }
        active.dec();
    }
}
