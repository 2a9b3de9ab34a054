//! The collector end of the exporter: one OTLP `Export` call per batch over a
//! tonic channel that connects on first use and reconnects after a failure. A
//! failed call drops its batch, counts its spans as dropped and logs a warning,
//! at most one per ten seconds.

use std::sync::Arc;
use std::time::Duration;

use meshgate_config as config;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::{Drops, otlp};
use crate::trace::SpanRecord;

/// Least time between two "export failed" warnings.
const WARN_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Client {
    /// `None` when the endpoint is not a valid URI: every batch fails.
    client: Option<TraceServiceClient<Channel>>,
    endpoint: String,
    service_name: String,
    timeout: Duration,
    drops: Arc<Drops>,
    warned_at: Option<Instant>,
    lost_since_warning: u64,
}

impl Client {
    /// Must be called inside a tokio runtime (the channel spawns its worker).
    pub(super) fn new(otlp: &config::Otlp, service_name: &str, drops: Arc<Drops>) -> Self {
        let timeout = otlp.timeout.get();
        Client {
            client: connect_lazy(&otlp.endpoint, timeout),
            endpoint: otlp.endpoint.clone(),
            service_name: service_name.to_owned(),
            timeout,
            drops,
            warned_at: None,
            lost_since_warning: 0,
        }
    }

    /// Exports and empties `batch`.
    pub(super) async fn export(&mut self, batch: &mut Vec<SpanRecord>) {
        let n = batch.len() as u64;
        let request = otlp::request(&self.service_name, batch.drain(..));
        let Some(client) = self.client.as_mut() else {
            self.fail(n, "invalid endpoint");
            return;
        };
        let mut request = tonic::Request::new(request);
        request.set_timeout(self.timeout);
        match tokio::time::timeout(self.timeout, client.export(request)).await {
            Ok(Ok(response)) => {
                let partial = response.into_inner().partial_success;
                if let Some(p) = partial.filter(|p| p.rejected_spans > 0) {
                    let error = format!(
                        "collector rejected {} spans: {}",
                        p.rejected_spans, p.error_message
                    );
                    self.warn(0, &error);
                }
            }
            Ok(Err(status)) => self.fail(n, &status.to_string()),
            Err(_elapsed) => self.fail(n, &format!("no answer within {:?}", self.timeout)),
        }
    }

    fn fail(&mut self, spans: u64, error: &str) {
        self.drops.add(spans);
        self.warn(spans, error);
    }

    /// Warns at most once per `WARN_EVERY`, with the spans lost since the last warning.
    fn warn(&mut self, spans_lost: u64, error: &str) {
        self.lost_since_warning += spans_lost;
        let now = Instant::now();
        if self
            .warned_at
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            return;
        }
        tracing::warn!(
            endpoint = %self.endpoint,
            error,
            spans_lost = self.lost_since_warning,
            "OTLP span export failed or was partly rejected"
        );
        self.warned_at = Some(now);
        self.lost_since_warning = 0;
    }
}

/// A client on a lazily connecting channel; `None` (logged) when the endpoint is
/// not a valid URI. An endpoint without a scheme is taken as `http://`.
fn connect_lazy(endpoint: &str, timeout: Duration) -> Option<TraceServiceClient<Channel>> {
    let uri = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    match Endpoint::from_shared(uri) {
        Ok(e) => Some(TraceServiceClient::new(
            e.connect_timeout(timeout).connect_lazy(),
        )),
        Err(err) => {
            tracing::error!(endpoint, error = %err, "invalid OTLP endpoint; spans will be dropped");
            None
        }
    }
}
