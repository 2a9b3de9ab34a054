//! A finished span, as the gateway hands it to the exporter.

use std::time::SystemTime;

use super::{SpanId, TraceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// The request as the gateway served it.
    Server,
    /// The call to the upstream.
    Client,
}

#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    /// String-valued attributes (`http.request.method`, `url.path`, …).
    pub attributes: Vec<(&'static str, String)>,
    /// Integer-valued attributes (`http.response.status_code`, …).
    pub int_attributes: Vec<(&'static str, i64)>,
    /// Error status (5xx or a gateway-generated failure).
    pub error: bool,
}
