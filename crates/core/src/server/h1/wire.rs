//! The connections `server::h1` serves, and how each is read while it waits for a
//! request: a plain socket is awaited until readable before a buffer is allocated
//! (an idle keep-alive connection then holds none); a TLS or mesh stream, whose
//! record layer buffers anyway, is read into a fresh buffer directly.

use std::future::Future;
use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use super::READ_CHUNK;
use crate::mesh_authz::Revocable;

pub(crate) trait Wire: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Reads into the empty `buf` once the peer sent something; `Ok(0)`: closed.
    /// Cancel-safe: nothing read is lost if the future is dropped.
    fn read_idle(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> + Send;
}

impl Wire for TcpStream {
    async fn read_idle(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        self.readable().await?;
        buf.reserve(READ_CHUNK);
        // `read_buf`, not `try_read_buf`: tokio's read clears the socket's readiness
        // after a short read, so the next wait for the client (`client_gone`, while
        // the request is in flight) costs no `read` that would only find nothing.
        self.read_buf(buf).await
    }
}

impl<T> Wire for Revocable<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn read_idle(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        buf.reserve(READ_CHUNK);
        self.read_buf(buf).await
    }
}
