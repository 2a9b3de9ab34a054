//! OTLP/gRPC span export. The request path hands finished spans to `Exporter::send`,
//! which only tries to push them onto a bounded queue (a full queue drops the span
//! and counts it). A background task takes up to `max_batch` spans, or whatever
//! arrived within one second of the first, converts them to one
//! `ExportTraceServiceRequest` (`otlp`) and calls the collector with the configured
//! timeout over a lazily (re)connecting tonic channel. A failed call drops its batch,
//! counts its spans as dropped and logs a warning, at most one per ten seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use meshgate_config as config;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::SpanRecord;

// Declared here rather than in `trace/mod.rs`: the conversion is this module's detail.
#[path = "otlp.rs"]
mod otlp;

/// Least time between two "export failed" warnings.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Hands finished spans to a background task that batches them to a collector.
pub struct Exporter {
    tx: mpsc::Sender<SpanRecord>,
    drops: Arc<Drops>,
    task: JoinHandle<()>,
    /// How long `shutdown` waits for the queue to be flushed.
    flush_wait: Duration,
}

impl Exporter {
    /// Spans that may wait for export; more are dropped.
    pub const QUEUE_CAPACITY: usize = 8192;
    /// Longest time a span waits for its batch to fill before it is sent anyway.
    pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

    /// Starts exporting to `cfg.otlp`; `None` when no collector is configured (or,
    /// logged as an error, when called outside a tokio runtime). An endpoint that
    /// is not a valid URI is logged and every span sent is counted as dropped.
    pub fn start(cfg: &config::Tracing) -> Option<Exporter> {
        let otlp = cfg.otlp.as_ref()?;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("OTLP exporter not started: no tokio runtime");
            return None;
        };
        let (tx, rx) = mpsc::channel(Self::QUEUE_CAPACITY);
        let drops = Arc::new(Drops::default());
        let timeout = otlp.timeout.get();
        let sink = Sink {
            client: connect_lazy(&otlp.endpoint, timeout),
            endpoint: otlp.endpoint.clone(),
            service_name: cfg.service_name.clone(),
            timeout,
            drops: Arc::clone(&drops),
            warned_at: None,
            failed_since_warn: 0,
        };
        let batcher = Batcher {
            rx,
            max_batch: otlp.max_batch.max(1),
            sink,
        };
        let task = runtime.spawn(batcher.run());
        tracing::debug!(endpoint = %otlp.endpoint, "exporting spans over OTLP/gRPC");
        Some(Exporter {
            tx,
            drops,
            task,
            flush_wait: timeout,
        })
    }

    /// Also counts drops in `counter` (e.g. `Metrics::spans_dropped`), including
    /// those already counted. Only the first counter given is kept.
    pub fn with_drop_counter(self, counter: Counter) -> Self {
        let before = self.dropped();
        if self.drops.metric.set(counter).is_ok()
            && let Some(metric) = self.drops.metric.get()
        {
            metric.inc_by(before);
        }
        self
    }

    /// Never blocks and never waits: a full queue drops the span (counted).
    pub fn send(&self, span: SpanRecord) {
        if self.tx.try_send(span).is_err() {
            self.drops.add(1);
        }
    }

    /// Spans that never reached the collector: dropped on a full queue or lost
    /// with a failed export call.
    pub fn dropped(&self) -> u64 {
        self.drops.total.load(Ordering::Relaxed)
    }

    /// Stops accepting spans and exports what is queued, waiting at most the
    /// configured export timeout; what is left then is abandoned. Dropping the
    /// exporter also flushes the queue, without waiting for it.
    pub async fn shutdown(self) {
        let Exporter {
            tx,
            task,
            flush_wait,
            ..
        } = self;
        drop(tx);
        let abort = task.abort_handle();
        if tokio::time::timeout(flush_wait, task).await.is_err() {
            abort.abort();
            tracing::warn!("OTLP exporter shut down before its queue was flushed");
        }
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("queued", &(Self::QUEUE_CAPACITY - self.tx.capacity()))
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// Spans dropped, shared by `send` and the background task.
#[derive(Default)]
struct Drops {
    total: AtomicU64,
    metric: OnceLock<Counter>,
}

impl Drops {
    fn add(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
        if let Some(metric) = self.metric.get() {
            metric.inc_by(n);
        }
    }
}

/// A client on a channel that connects on first use and reconnects after a
/// failure; `None` (logged) when the endpoint is not a valid URI. An endpoint
/// without a scheme is taken as `http://`.
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

/// The background task: queue → batches.
struct Batcher {
    rx: mpsc::Receiver<SpanRecord>,
    max_batch: usize,
    sink: Sink,
}

impl Batcher {
    /// Runs until the exporter is gone and the queue is flushed.
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch.min(Exporter::QUEUE_CAPACITY));
        loop {
            if self.rx.recv_many(&mut batch, self.max_batch).await == 0 {
                return; // closed and empty
            }
            let deadline = Instant::now() + Exporter::FLUSH_INTERVAL;
            let mut open = true;
            while batch.len() < self.max_batch {
                let room = self.max_batch - batch.len();
                let more = self.rx.recv_many(&mut batch, room);
                match tokio::time::timeout_at(deadline, more).await {
                    Ok(0) => {
                        open = false;
                        break;
                    }
                    Ok(_) => {}
                    Err(_elapsed) => break,
                }
            }
            self.sink.export(&mut batch).await;
            if !open {
                return;
            }
        }
    }
}

/// The collector end: one export call per batch, failures logged and counted.
struct Sink {
    client: Option<TraceServiceClient<Channel>>,
    endpoint: String,
    service_name: String,
    timeout: Duration,
    drops: Arc<Drops>,
    warned_at: Option<Instant>,
    failed_since_warn: u64,
}

impl Sink {
    /// Exports and empties `batch`.
    async fn export(&mut self, batch: &mut Vec<SpanRecord>) {
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
                let partial = response
                    .into_inner()
                    .partial_success
                    .filter(|p| p.rejected_spans > 0);
                if let Some(p) = partial {
                    self.warn(
                        0,
                        &format!(
                            "collector rejected {} spans: {}",
                            p.rejected_spans, p.error_message
                        ),
                    );
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
        self.failed_since_warn += spans_lost;
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
            spans_lost = self.failed_since_warn,
            "OTLP span export failed or was partly rejected"
        );
        self.warned_at = Some(now);
        self.failed_since_warn = 0;
    }
}
