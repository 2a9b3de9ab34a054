//! Helpers to build spans and check what arrived at the testkit's OTLP collector.

use std::time::{Duration, Instant, SystemTime};

use meshgate_config::{Otlp, Tracing};
use meshgate_observe::trace::{SpanKind, SpanRecord};
pub use meshgate_testkit::otlp::collector;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};

pub fn tracing(endpoint: &str, max_batch: usize, timeout: Duration) -> Tracing {
    Tracing {
        otlp: Some(Otlp {
            endpoint: endpoint.into(),
            timeout: meshgate_config::Duration(timeout),
            max_batch,
        }),
        service_name: "edge-test".into(),
        sample_ratio: 1.0,
    }
}

pub fn record(
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    kind: SpanKind,
    error: bool,
) -> SpanRecord {
    let start = SystemTime::now();
    SpanRecord {
        trace_id: [0x4b; 16],
        span_id,
        parent_span_id: parent,
        name: format!("{kind:?} span"),
        kind,
        start,
        end: start + Duration::from_millis(3),
        attributes: vec![
            ("http.request.method", "GET".into()),
            ("url.path", "/orders".into()),
        ],
        int_attributes: vec![("http.response.status_code", if error { 502 } else { 200 })],
        error,
    }
}

pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64
}

pub fn check(got: &Span, sent: &SpanRecord, kind: span::SpanKind, status: status::StatusCode) {
    assert_eq!(got.trace_id, sent.trace_id);
    assert_eq!(got.span_id, sent.span_id);
    assert_eq!(got.name, sent.name);
    assert_eq!(got.kind, kind as i32);
    assert_eq!(got.start_time_unix_nano, nanos(sent.start));
    assert_eq!(got.end_time_unix_nano, nanos(sent.end));
    assert_eq!(got.status.as_ref().map_or(0, |s| s.code), status as i32);
    assert_eq!(
        attr(&got.attributes, "http.request.method"),
        Some(&Value::StringValue("GET".into()))
    );
    assert_eq!(
        attr(&got.attributes, "url.path"),
        Some(&Value::StringValue("/orders".into()))
    );
    let code = sent.int_attributes[0].1;
    assert_eq!(
        attr(&got.attributes, "http.response.status_code"),
        Some(&Value::IntValue(code))
    );
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}
