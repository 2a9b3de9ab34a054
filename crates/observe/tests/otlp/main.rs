//! OTLP/gRPC export over loopback (tier 2): an in-test collector (`support`)
//! receives what `Exporter` sends. Waits are bounded polls, never fixed sleeps.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshgate_config::Tracing;
use meshgate_observe::trace::{Exporter, SpanKind, SpanRecord};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prometheus_client::metrics::counter::Counter;
use support::{attr, check, collector, eventually, record, tracing};

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
