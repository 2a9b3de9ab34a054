//! Distributed tracing: W3C trace context (`context`), the spans the gateway
//! produces per request (`span`), and their OTLP/gRPC export (`export`).

mod context;
mod export;
mod span;

pub use context::{SpanId, TraceContext, TraceId, hex, write_hex};
pub use export::Exporter;
pub use span::{SpanKind, SpanRecord};
