//! The one body type that crosses the proxy in both directions: nothing, bytes the
//! gateway holds (replayable, generated), or a peer's stream passed through unbuffered.

mod inbound;
pub(crate) mod replay;

pub use inbound::Inbound;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// A request or response body.
#[derive(Debug, Default)]
pub enum Body {
    #[default]
    Empty,
    /// Bytes held by the gateway; yielded once.
    Full(Option<Bytes>),
    /// A peer's body, streamed frame by frame.
    Stream(Inbound),
    /// A peer's body, streamed, with data bytes added to a shared counter (request
    /// bodies, whose size the access log reports after the response is sent).
    Counted(Inbound, Arc<AtomicU64>),
    /// A primary response copied for a mirror's response diff as it streams.
    Tee(Box<crate::proxy::mirror::Tee>),
    /// A response compressed as it streams (`routes[].compression`).
    Compressed(Box<crate::compress::Encoded>),
    /// One try of a request body streamed and copied for retries (`replay`).
    Replay(Box<replay::ReplayBody<Inbound>>),
    /// An HTTP/1.1 upstream's response, its connection pooled again at the end.
    Pooled(Box<crate::upstream::PooledBody>),
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Body::Empty
        } else {
            Body::Full(Some(bytes))
        }
    }
}

/// Data bytes in a polled frame (0 for trailers, errors, pending or the end).
pub(crate) fn data_len(polled: &Poll<Option<Result<Frame<Bytes>, hyper::Error>>>) -> u64 {
    match polled {
        Poll::Ready(Some(Ok(frame))) => frame.data_ref().map_or(0, |d| d.len() as u64),
        _ => 0,
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(inner) => Pin::new(inner).poll_frame(cx),
            Body::Counted(inner, count) => {
                let polled = Pin::new(inner).poll_frame(cx);
                count.fetch_add(data_len(&polled), Ordering::Relaxed);
                polled
            }
            Body::Tee(tee) => Pin::new(&mut **tee).poll_frame(cx),
            Body::Compressed(c) => c.poll_frame(cx),
            Body::Replay(r) => Pin::new(&mut **r).poll_frame(cx),
            Body::Pooled(p) => Pin::new(&mut **p).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(bytes) => bytes.is_none(),
            Body::Stream(inner) | Body::Counted(inner, _) => inner.is_end_stream(),
            Body::Tee(tee) => tee.is_end_stream(),
            Body::Compressed(c) => c.is_end_stream(),
            Body::Replay(r) => r.is_end_stream(),
            Body::Pooled(p) => p.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(inner) | Body::Counted(inner, _) => inner.size_hint(),
            Body::Tee(tee) => tee.size_hint(),
            Body::Compressed(c) => c.size_hint(),
            Body::Replay(r) => r.size_hint(),
            Body::Pooled(p) => p.size_hint(),
        }
    }
}
