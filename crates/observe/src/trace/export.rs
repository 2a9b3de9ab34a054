//! OTLP/gRPC span export. The request path hands finished spans to `Exporter::send`,
//! which only tries to push them onto a bounded queue (a full queue drops the span
//! and counts it). A background task takes up to `max_batch` spans, or whatever
//! arrived within one second of the first, converts them to one
//! `ExportTraceServiceRequest` (`otlp`) and sends it to the collector (`client`).

mod client;
mod otlp;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use meshgate_config as config;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::SpanRecord;
use client::Client;

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
        let client = Client::new(otlp, &cfg.service_name, Arc::clone(&drops));
        let batcher = Batcher {
            rx,
            max_batch: otlp.max_batch.max(1),
            client,
        };
        let task = runtime.spawn(batcher.run());
        tracing::debug!(endpoint = %otlp.endpoint, "exporting spans over OTLP/gRPC");
        Some(Exporter {
            tx,
            drops,
            task,
            flush_wait: otlp.timeout.get(),
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
    /// exporter also flushes the queue, in the background.
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

/// The background task: queue → batches → client.
struct Batcher {
    rx: mpsc::Receiver<SpanRecord>,
    max_batch: usize,
    client: Client,
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
                match tokio::time::timeout_at(deadline, self.rx.recv_many(&mut batch, room)).await {
                    Ok(0) => {
                        open = false;
                        break;
                    }
                    Ok(_) => {}
                    Err(_elapsed) => break,
                }
            }
            self.client.export(&mut batch).await;
            if !open {
                return;
            }
        }
    }
}
