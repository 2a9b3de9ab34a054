//! The tee on a mirrored primary response in diff mode: passes every frame through
//! as it comes (never waits, never holds one back) and keeps a reference to each
//! data chunk up to the cap; when the body has been sent in full it hands the copy
//! to the comparison. A body that fails or is abandoned hands nothing over.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, StatusCode};
use http_body::{Body as _, Frame, SizeHint};
use tokio::sync::oneshot;

use super::diff::Captured;
use crate::body::Body;

/// A response body being copied for the comparison.
#[derive(Debug)]
pub struct Tee {
    inner: Body,
    status: StatusCode,
    headers: Vec<Option<HeaderValue>>,
    /// Chunks seen so far (shared, not copied); `None` once past the cap.
    chunks: Option<Vec<Bytes>>,
    kept: usize,
    cap: usize,
    /// Taken when the copy is handed over (or the body failed).
    done: Option<oneshot::Sender<Captured>>,
}

impl Tee {
    pub(super) fn new(
        inner: Body,
        status: StatusCode,
        headers: Vec<Option<HeaderValue>>,
        cap: usize,
        done: oneshot::Sender<Captured>,
    ) -> Self {
        Tee {
            inner,
            status,
            headers,
            chunks: Some(Vec::new()),
            kept: 0,
            cap,
            done: Some(done),
        }
    }

    fn keep(&mut self, data: &Bytes) {
        if let Some(chunks) = &mut self.chunks {
            self.kept += data.len();
            if self.kept > self.cap {
                self.chunks = None;
            } else if !data.is_empty() {
                chunks.push(data.clone());
            }
        }
    }

    fn hand_over(&mut self) {
        let Some(done) = self.done.take() else {
            return;
        };
        let body = self.chunks.take().map(|chunks| match chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut all = BytesMut::with_capacity(self.kept);
                many.iter().for_each(|c| all.extend_from_slice(c));
                all.freeze()
            }
        });
        // The mirror task may be gone (shadow timed out or failed): nothing to do.
        let _ = done.send(Captured {
            status: self.status,
            headers: std::mem::take(&mut self.headers),
            body,
        });
    }
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.keep(data);
                }
            }
            Poll::Ready(None) => this.hand_over(),
            Poll::Ready(Some(Err(_))) => this.done = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        // hyper may not poll a body that says it has ended (e.g. empty): it was
        // still sent in full.
        if self.inner.is_end_stream() {
            self.hand_over();
        }
    }
}
