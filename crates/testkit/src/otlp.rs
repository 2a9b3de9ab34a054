//! An in-test OTLP/gRPC trace collector: a tonic `TraceService` on 127.0.0.1:0
//! that hands each export request to the test through a channel, optionally held
//! behind a gate (to fill an exporter's queue on purpose).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
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

impl Receiver {
    /// Every span of the requests received until `want` spans arrived, or `within` passed.
    pub async fn flat_spans(&mut self, want: usize, within: Duration) -> Vec<Span> {
        let (requests, _) = self.spans(want, within).await;
        requests
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect()
    }
}
