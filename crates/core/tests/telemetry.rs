//! Telemetry through a real gateway: the metrics registry matches the requests
//! sent, and traces reach a real OTLP/gRPC collector with the right ids (the
//! caller's span → the gateway's server span → its client span → the upstream).

mod common;

use std::time::Duration;

use http::Method;
use meshgate_testkit::Backend;
use meshgate_testkit::otlp::collector;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_prefix))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn metrics_count_what_was_sent() {
    let b = Backend::start("svc").await;
    let yaml = format!(
        "listeners: [{{name: web, address: \"127.0.0.1:0\"}}]
routes:
  - {{name: api, matches: [{{path: {{value: /api}}}}], backendRefs: [{{name: svc}}]}}
services:
{}",
        common::service("svc", &[b.addr])
    );
    let h = common::start(&yaml).await;
    for _ in 0..7 {
        h.get("h", "/api/ok").await;
    }
    for _ in 0..3 {
        h.get("h", "/api/status/503").await;
    }
    h.send(
        Method::POST,
        "h",
        "/api/x",
        &[],
        bytes::Bytes::from_static(b"12345"),
    )
    .await;
    h.get("h", "/nowhere").await;
    h.get("h", "/nowhere").await;
    // Requests are counted when their response body is finished; allow a moment.
    let text = {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let t = h.gateway.metrics().encode();
            if metric(&t, "meshgate_requests_total{route=\"none\"").is_some()
                || std::time::Instant::now() > deadline
            {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let api = "meshgate_requests_total{route=\"api\",service=\"svc\",method=";
    assert_eq!(
        metric(&text, &format!("{api}\"GET\",status_class=\"2xx\"}}")),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("{api}\"GET\",status_class=\"5xx\"}}")),
        Some(3.0)
    );
    assert_eq!(
        metric(&text, &format!("{api}\"POST\",status_class=\"2xx\"}}")),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "meshgate_requests_total{route=\"none\",service=\"none\",method=\"GET\",status_class=\"4xx\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            "meshgate_request_duration_seconds_count{route=\"api\"}"
        ),
        Some(11.0)
    );
    assert_eq!(
        metric(
            &text,
            "meshgate_upstream_duration_seconds_count{service=\"svc\"}"
        ),
        Some(11.0)
    );
    assert_eq!(
        metric(&text, "meshgate_request_body_bytes_total{route=\"api\"}"),
        Some(5.0)
    );
    assert_eq!(
        metric(&text, "meshgate_connections_total{listener=\"web\"}"),
        Some(1.0),
        "one keep-alive connection"
    );
    assert!(text.contains("# TYPE meshgate_request_duration_seconds histogram"));
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text");
    assert!(!text.contains("/api/ok"), "no raw paths as labels");
}

#[tokio::test]
async fn traces_reach_the_collector_with_parent_and_child_ids() {
    let b = Backend::start("svc").await;
    let mut otlp = collector(true).await;
    let yaml = format!(
        "tracing: {{otlp: {{endpoint: \"{}\"}}, serviceName: edge}}
listeners: [{{name: web, address: \"127.0.0.1:0\"}}]
routes:
  - {{name: api, backendRefs: [{{name: svc}}]}}
services:
{}",
        otlp.endpoint,
        common::service("svc", &[b.addr])
    );
    let h = common::start(&yaml).await;
    let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = h
        .send(
            Method::GET,
            "h",
            "/orders/7",
            &[("traceparent", caller), ("tracestate", "k=v")],
            bytes::Bytes::new(),
        )
        .await;
    let upstream_tp = r.json()["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(r.json()["headers"]["tracestate"], "k=v");
    let spans = otlp.flat_spans(2, Duration::from_secs(5)).await;
    assert_eq!(spans.len(), 2, "server and client span");
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("server span");
    let client = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .expect("client span");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(hex(&server.trace_id), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(hex(&client.trace_id), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(
        hex(&server.parent_span_id),
        "b7ad6b7169203331",
        "server span continues the caller's"
    );
    assert_eq!(
        client.parent_span_id, server.span_id,
        "client span is the server span's child"
    );
    assert_eq!(
        upstream_tp,
        format!(
            "00-0af7651916cd43dd8448eb211c80319c-{}-01",
            hex(&client.span_id)
        )
    );
    assert_eq!(server.name, "GET api");
    assert!(client.start_time_unix_nano >= server.start_time_unix_nano);
    assert!(client.end_time_unix_nano <= server.end_time_unix_nano);
    let log = h.log_lines(1).await;
    assert_eq!(
        log[0]["trace_id"], "0af7651916cd43dd8448eb211c80319c",
        "trace id in the access log"
    );

    // No incoming traceparent: a new trace, still parent → child.
    let r = h.get("h", "/new").await;
    let tp = r.json()["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_owned();
    let spans = otlp.flat_spans(2, Duration::from_secs(5)).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    let client = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap();
    assert!(server.parent_span_id.is_empty(), "a root span");
    assert_eq!(client.parent_span_id, server.span_id);
    assert!(tp.contains(&hex(&server.trace_id)) && tp.contains(&hex(&client.span_id)));
}
