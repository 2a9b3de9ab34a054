//! The response body handed to the client: passes frames through, counts bytes, and
//! when it is dropped (sent, or abandoned by the client) records the request's
//! metrics, hands its spans to the exporter, emits the access log record, and
//! releases the endpoint's in-flight slot and the service's `maxRequests` slot.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use std::sync::Arc;

use meshgate_observe::access_log::AccessRecord;
use meshgate_observe::trace::TraceContext;

use super::{Held, Shared};
use crate::body::Body;

pub struct LoggedBody {
    inner: Body,
    record: Option<AccessRecord>,
    started: Instant,
    shared: Arc<Shared>,
    trace: Option<TraceContext>,
    _held: Option<Held>,
}

impl LoggedBody {
    pub fn new(
        inner: Body,
        record: AccessRecord,
        started: Instant,
        shared: Arc<Shared>,
        trace: Option<TraceContext>,
        held: Option<Held>,
    ) -> Self {
        LoggedBody {
            inner,
            record: Some(record),
            started,
            shared,
            trace,
            _held: held,
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(record) = this.record.as_mut() {
            record.bytes_out += crate::body::data_len(&polled);
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

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.duration = self.started.elapsed();
        self.shared.metrics.on_request(&record);
        // Only the proxy thread needs it: dropping it on the log thread would bounce
        // its refcount between cores on every request.
        record.route_metrics = None;
        if let (Some(exporter), Some(cx)) = (&self.shared.exporter, self.trace.take())
            && cx.sampled
        {
            for span in super::spans::of_request(&cx, &record) {
                exporter.send(span);
            }
        }
        if self.shared.log.enabled() {
            self.shared.log.send(record);
        }
    }
}
