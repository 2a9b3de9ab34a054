//! The in-test OTLP collector (a tonic `TraceService` on 127.0.0.1:0 that hands
//! each request to the test through a channel, optionally held behind a gate) and
//! helpers to build spans and check what arrived.

use std::time::{Duration, Instant, SystemTime};

use meshgate_config::{Otlp, Tracing};
use meshgate_observe::trace::{SpanKind, SpanRecord};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use tokio::sync::{mpsc, watch};

/// Forwards every request once its gate is open.
struct Collector {
    tx: mpsc::UnboundedSender<ExportTraceServiceRequest>,
    gate: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.gate.clone().wait_for(|open| *open).await;
        let _ = self.tx.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

pub struct Receiver {
    pub endpoint: String,
    requests: mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    pub gate: watch::Sender<bool>,
}

impl Receiver {
    /// Requests received until `want` spans arrived in all, or `within` passed.
    pub async fn spans(
        &mut self,
        want: usize,
        within: Duration,
    ) -> (Vec<ExportTraceServiceRequest>, usize) {
        let deadline = tokio::time::Instant::now() + within;
        let (mut got, mut spans) = (Vec::new(), 0);
        while spans < want {
            match tokio::time::timeout_at(deadline, self.requests.recv()).await {
                Ok(Some(r)) => {
                    spans += r
                        .resource_spans
                        .iter()
                        .flat_map(|rs| &rs.scope_spans)
                        .map(|ss| ss.spans.len())
                        .sum::<usize>();
                    got.push(r);
                }
                Ok(None) | Err(_) => break,
            }
        }
        (got, spans)
    }
}

/// A collector on a free loopback port; it answers at once when `open`.
pub async fn collector(open: bool) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, requests) = mpsc::unbounded_channel();
    let (gate, gate_rx) = watch::channel(open);
    let service = TraceServiceServer::new(Collector { tx, gate: gate_rx });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Receiver {
        endpoint: format!("http://{addr}"),
        requests,
        gate,
    }
}

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
