//! OTLP/gRPC export over loopback (tier 2): an in-test collector, a tonic
//! `TraceService` on 127.0.0.1:0, receives what `Exporter` sends and hands the
//! requests to the test through a channel. Waits are bounded polls, never sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use meshgate_config::{Otlp, Tracing};
use meshgate_observe::trace::{Exporter, SpanKind, SpanRecord};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prometheus_client::metrics::counter::Counter;
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

struct Receiver {
    endpoint: String,
    requests: mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    gate: watch::Sender<bool>,
}

impl Receiver {
    /// Requests received until `want` spans arrived in all, or `within` passed.
    async fn spans(
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
async fn collector(open: bool) -> Receiver {
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

fn tracing(endpoint: &str, max_batch: usize, timeout: Duration) -> Tracing {
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

fn record(span_id: [u8; 8], parent: Option<[u8; 8]>, kind: SpanKind, error: bool) -> SpanRecord {
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

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
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

fn check(got: &Span, sent: &SpanRecord, kind: span::SpanKind, status: status::StatusCode) {
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
async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[tokio::test]
async fn server_and_client_spans_arrive_with_ids_kinds_attributes_and_status() {
    let mut rx = collector(true).await;
    let exporter = Exporter::start(&tracing(&rx.endpoint, 512, Duration::from_secs(5))).unwrap();
    let caller = [9, 9, 9, 9, 9, 9, 9, 1];
    let server = record(
        [1, 2, 3, 4, 5, 6, 7, 8],
        Some(caller),
        SpanKind::Server,
        true,
    );
    let client = record(
        [8, 7, 6, 5, 4, 3, 2, 1],
        Some(server.span_id),
        SpanKind::Client,
        false,
    );
    exporter.send(server.clone());
    exporter.send(client.clone());

    // Two spans are fewer than max_batch: they go out on the one-second flush.
    let (requests, n) = rx.spans(2, Duration::from_secs(5)).await;
    assert_eq!(n, 2, "spans received: {requests:?}");
    let spans: Vec<&Span> = requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    for rs in requests.iter().flat_map(|r| &r.resource_spans) {
        let resource = rs.resource.as_ref().expect("resource");
        assert_eq!(
            attr(&resource.attributes, "service.name"),
            Some(&Value::StringValue("edge-test".into()))
        );
    }
    let got_server = spans
        .iter()
        .find(|s| s.kind == span::SpanKind::Server as i32)
        .expect("server span");
    let got_client = spans
        .iter()
        .find(|s| s.kind == span::SpanKind::Client as i32)
        .expect("client span");
    check(
        got_server,
        &server,
        span::SpanKind::Server,
        status::StatusCode::Error,
    );
    check(
        got_client,
        &client,
        span::SpanKind::Client,
        status::StatusCode::Unset,
    );
    assert_eq!(got_server.parent_span_id, caller);
    assert_eq!(got_client.parent_span_id, got_server.span_id);
    assert_eq!(exporter.dropped(), 0);
}

#[tokio::test]
async fn a_root_span_has_an_empty_parent_and_shutdown_flushes_without_waiting_for_the_timer() {
    let mut rx = collector(true).await;
    let exporter = Exporter::start(&tracing(&rx.endpoint, 512, Duration::from_secs(5))).unwrap();
    exporter.send(record([3; 8], None, SpanKind::Server, false));
    let started = Instant::now();
    exporter.shutdown().await;
    // The queue was closed, so the batch left before its one-second timer.
    assert!(
        started.elapsed() < Exporter::FLUSH_INTERVAL,
        "shutdown took {:?}",
        started.elapsed()
    );
    let (requests, n) = rx.spans(1, Duration::from_secs(5)).await;
    assert_eq!(n, 1);
    let span = &requests[0].resource_spans[0].scope_spans[0].spans[0];
    assert!(span.parent_span_id.is_empty());
    assert_eq!(span.span_id, [3; 8]);
}

// Multi-threaded, as in the gateway: the export task drains while the test sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_never_blocks_send_and_its_spans_count_as_dropped() {
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let counter = Counter::default();
    let exporter = Exporter::start(&tracing(
        &format!("http://{dead}"),
        100,
        Duration::from_secs(2),
    ))
    .unwrap()
    .with_drop_counter(counter.clone());
    let spans: Vec<SpanRecord> = (0..1000u32)
        .map(|i| {
            let mut id = [0xd0; 8];
            id[..4].copy_from_slice(&i.to_be_bytes());
            record(id, None, SpanKind::Server, false)
        })
        .collect();
    let started = Instant::now();
    for span in spans {
        exporter.send(span);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(200),
        "1000 sends took {took:?}"
    );
    // Every batch fails (connection refused) and is counted; the task lives on.
    assert!(
        eventually(Duration::from_secs(5), || exporter.dropped() == 1000).await,
        "dropped {}",
        exporter.dropped()
    );
    assert_eq!(counter.get(), 1000);
    exporter.send(record([1; 8], None, SpanKind::Client, false));
    assert!(
        eventually(Duration::from_secs(5), || exporter.dropped() == 1001).await,
        "the export task died"
    );
    tokio::time::timeout(Duration::from_secs(5), exporter.shutdown())
        .await
        .expect("shutdown is bounded");
}

// Multi-threaded, as in the gateway: the export task drains while the test sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_and_the_rest_is_delivered() {
    let mut rx = collector(false).await; // holds every export until the gate opens
    let max_batch = 64;
    let counter = Counter::default();
    let exporter = Exporter::start(&tracing(&rx.endpoint, max_batch, Duration::from_secs(30)))
        .unwrap()
        .with_drop_counter(counter.clone());
    let extra = 500;
    let sent = Exporter::QUEUE_CAPACITY + max_batch + extra;
    for i in 0..sent {
        let mut id = [0xf0; 8];
        id[..4].copy_from_slice(&(i as u32).to_be_bytes());
        exporter.send(record(id, None, SpanKind::Client, false));
    }
    // The queue takes QUEUE_CAPACITY; the blocked export holds at most one batch.
    let dropped = exporter.dropped() as usize;
    assert!(
        (extra..=extra + max_batch).contains(&dropped),
        "dropped {dropped} of {sent}"
    );
    assert_eq!(counter.get() as usize, dropped);

    rx.gate.send_replace(true);
    let (_, received) = rx.spans(sent - dropped, Duration::from_secs(10)).await;
    assert_eq!(received, sent - dropped, "every queued span is delivered");
    assert_eq!(exporter.dropped() as usize, dropped, "no export failed");
}

#[tokio::test]
async fn no_collector_configured_means_no_exporter() {
    let cfg = Tracing {
        otlp: None,
        ..Tracing::default()
    };
    assert!(Exporter::start(&cfg).is_none());
}

#[tokio::test]
async fn an_invalid_endpoint_drops_and_counts_instead_of_failing() {
    let exporter =
        Exporter::start(&tracing("http://bad host:1", 1, Duration::from_secs(1))).unwrap();
    exporter.send(record([5; 8], None, SpanKind::Server, false));
    assert!(eventually(Duration::from_secs(5), || exporter.dropped() == 1).await);
}
