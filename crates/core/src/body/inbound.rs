//! A request body as a listener received it: hyper's stream (HTTP/2, and HTTP/1.1
//! connections meshgate's own server handed to hyper), or the bytes meshgate's
//! HTTP/1.1 server read together with the head (`server::h1`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

#[derive(Debug)]
pub enum Inbound {
    Hyper(Incoming),
    /// The whole body, already read (`None`: none, or yielded).
    Held(Option<Bytes>),
}

impl From<Incoming> for Inbound {
    fn from(body: Incoming) -> Self {
        Inbound::Hyper(body)
    }
}

impl Body for Inbound {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Inbound::Hyper(inner) => Pin::new(inner).poll_frame(cx),
            Inbound::Held(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inbound::Hyper(inner) => inner.is_end_stream(),
            Inbound::Held(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inbound::Hyper(inner) => inner.size_hint(),
            Inbound::Held(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
