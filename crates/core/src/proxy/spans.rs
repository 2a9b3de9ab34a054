//! The spans one request produces: the gateway's server span and, when an upstream
//! was called, a client span under it (OpenTelemetry HTTP semantic conventions).

use std::time::Duration;

use meshgate_observe::access_log::AccessRecord;
use meshgate_observe::trace::{SpanKind, SpanRecord, TraceContext};

pub fn of_request(cx: &TraceContext, r: &AccessRecord) -> Vec<SpanRecord> {
    let method = r.method.as_str();
    let route = r.route.as_deref().unwrap_or("no_route");
    let end = r.time + r.duration;
    let error = r.status >= 500 || r.reason.is_some_and(|_| r.status >= 500);
    let mut server = SpanRecord {
        trace_id: cx.trace_id,
        span_id: cx.span_id,
        parent_span_id: cx.parent_span_id,
        name: format!("{method} {route}"),
        kind: SpanKind::Server,
        start: r.time,
        end,
        attributes: vec![
            ("http.request.method", method.to_owned()),
            ("http.route", route.to_owned()),
            ("client.address", r.client.to_canonical().to_string()),
            (
                "meshgate.request_id",
                r.request_id.to_str().unwrap_or_default().to_owned(),
            ),
        ],
        int_attributes: vec![("http.response.status_code", i64::from(r.status))],
        error,
    };
    if let Some(path) = &r.path {
        server.attributes.push(("url.path", path.path().to_owned()));
    }
    if let Some(authority) = r.authority.as_ref().and_then(|a| a.to_str().ok()) {
        server
            .attributes
            .push(("server.address", authority.to_owned()));
    }
    if let Some(reason) = r.reason {
        server
            .attributes
            .push(("meshgate.reason", reason.to_owned()));
    }
    let mut spans = vec![server];
    if let (Some(started), Some(service)) = (r.upstream_started, &r.service) {
        let elapsed = r.upstream_elapsed.unwrap_or(Duration::ZERO);
        let mut client = SpanRecord {
            trace_id: cx.trace_id,
            span_id: cx.upstream_span_id,
            parent_span_id: Some(cx.span_id),
            name: format!("{method} {service}"),
            kind: SpanKind::Client,
            start: started,
            end: started + elapsed,
            attributes: vec![
                ("http.request.method", method.to_owned()),
                ("meshgate.service", service.to_string()),
            ],
            int_attributes: vec![
                ("http.response.status_code", i64::from(r.status)),
                ("http.request.resend_count", i64::from(r.retries)),
            ],
            error,
        };
        if let Some(upstream) = &r.upstream {
            client
                .attributes
                .push(("server.address", upstream.to_string()));
        }
        spans.push(client);
    }
    spans
}
