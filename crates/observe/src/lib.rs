//! meshgate-observe: what the gateway tells operators. The Prometheus/OpenMetrics
//! registry (`metrics`), the JSON access log (`access_log`), and W3C trace context
//! with OTLP span export (`trace`). Sits below meshgate-core so the request path
//! holds metric handles directly (atomics, no dynamic hook per request).

pub mod access_log;
pub mod metrics;
pub mod trace;

pub use access_log::{AccessLog, AccessRecord};
pub use metrics::Metrics;
