//! Conversion of finished spans (`SpanRecord`) into one OTLP
//! `ExportTraceServiceRequest`: one resource (`service.name`), one
//! instrumentation scope (`meshgate`), the spans in the order given.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, SpanFlags, Status, span, status,
};

use crate::trace::{SpanKind, SpanRecord};

/// Trace flags of every exported span: the gateway only exports sampled spans.
const SAMPLED: u32 = 0x01;

/// The request carrying `spans`, all from the resource named `service_name`.
pub(crate) fn request(
    service_name: &str,
    spans: impl IntoIterator<Item = SpanRecord>,
) -> ExportTraceServiceRequest {
    let resource = Resource {
        attributes: vec![kv(
            "service.name".into(),
            Value::StringValue(service_name.into()),
        )],
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "meshgate".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans: spans.into_iter().map(span).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// One span. The server span's parent (when there is one) came in with the
/// request, so it is remote; the client span's parent is the server span.
pub(crate) fn span(r: SpanRecord) -> Span {
    let (kind, parent_remote) = match r.kind {
        SpanKind::Server => (span::SpanKind::Server, r.parent_span_id.is_some()),
        SpanKind::Client => (span::SpanKind::Client, false),
    };
    let mut flags = SAMPLED | SpanFlags::ContextHasIsRemoteMask as u32;
    if parent_remote {
        flags |= SpanFlags::ContextIsRemoteMask as u32;
    }
    let mut attributes = Vec::with_capacity(r.attributes.len() + r.int_attributes.len());
    attributes.extend(
        r.attributes
            .into_iter()
            .map(|(k, v)| kv(k.into(), Value::StringValue(v))),
    );
    attributes.extend(
        r.int_attributes
            .into_iter()
            .map(|(k, v)| kv(k.into(), Value::IntValue(v))),
    );
    let code = if r.error {
        status::StatusCode::Error
    } else {
        status::StatusCode::Unset
    };
    Span {
        trace_id: r.trace_id.to_vec(),
        span_id: r.span_id.to_vec(),
        parent_span_id: r.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags,
        name: r.name,
        kind: kind as i32,
        start_time_unix_nano: unix_nanos(r.start),
        end_time_unix_nano: unix_nanos(r.end),
        attributes,
        status: Some(Status {
            code: code as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

fn kv(key: String, value: Value) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// Nanoseconds since the Unix epoch; 0 for a time before it (a broken clock).
pub(crate) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(kind: SpanKind, parent: Option<[u8; 8]>, error: bool) -> SpanRecord {
        SpanRecord {
            trace_id: [7; 16],
            span_id: [1; 8],
            parent_span_id: parent,
            name: "GET /x".into(),
            kind,
            start: UNIX_EPOCH + Duration::from_nanos(1_000),
            end: UNIX_EPOCH + Duration::from_nanos(5_000),
            attributes: vec![("url.path", "/x".into())],
            int_attributes: vec![("http.response.status_code", 503)],
            error,
        }
    }

    #[test]
    fn maps_ids_kind_times_status_and_flags() {
        let s = span(record(SpanKind::Server, Some([2; 8]), true));
        assert_eq!(s.trace_id, vec![7; 16]);
        assert_eq!(s.span_id, vec![1; 8]);
        assert_eq!(s.parent_span_id, vec![2; 8]);
        assert_eq!(s.kind, span::SpanKind::Server as i32);
        assert_eq!(
            (s.start_time_unix_nano, s.end_time_unix_nano),
            (1_000, 5_000)
        );
        assert_eq!(s.status.unwrap().code, status::StatusCode::Error as i32);
        assert_eq!(s.flags, 0x301);
        assert_eq!(s.attributes.len(), 2);

        let c = span(record(SpanKind::Client, None, false));
        assert!(c.parent_span_id.is_empty());
        assert_eq!(c.kind, span::SpanKind::Client as i32);
        assert_eq!(c.status.unwrap().code, status::StatusCode::Unset as i32);
        assert_eq!(c.flags, 0x101);
    }

    #[test]
    fn time_before_epoch_is_zero() {
        assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn request_names_the_service() {
        let req = request("edge", [record(SpanKind::Client, None, false)]);
        let rs = &req.resource_spans[0];
        let attr = &rs.resource.as_ref().unwrap().attributes[0];
        assert_eq!(attr.key, "service.name");
        assert_eq!(
            attr.value.as_ref().unwrap().value,
            Some(Value::StringValue("edge".into()))
        );
        assert_eq!(rs.scope_spans[0].spans.len(), 1);
    }
}
