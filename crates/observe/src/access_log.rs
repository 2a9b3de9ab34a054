//! The access log: one JSON line per request, written by a dedicated thread so the
//! request path only fills a record and hands it over (never blocks, never formats).

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Version};
use prometheus_client::metrics::counter::Counter;

mod connection;
pub use connection::ConnectionRecord;

/// Everything one log line says. Fields are cheap clones of what the request already
/// holds (shared `Bytes`, `Arc<str>`), so filling it costs no copies of strings.
#[derive(Debug)]
pub struct AccessRecord {
    pub time: SystemTime,
    pub method: Method,
    pub authority: Option<HeaderValue>,
    pub path: Option<PathAndQuery>,
    pub protocol: Version,
    pub client: IpAddr,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_in_streamed: Option<Arc<AtomicU64>>,
    pub bytes_out: u64,
    pub duration: Duration,
    pub route: Option<Arc<str>>,
    pub service: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    pub request_id: HeaderValue,
    pub retries: u32,
    pub reason: Option<&'static str>,
    /// W3C trace id, when the request is traced (hex-encoded only when written).
    pub trace_id: Option<[u8; 16]>,
    /// The matched route's metric handles (so recording needs no lookup).
    pub route_metrics: Option<Arc<crate::metrics::RouteMetrics>>,
    /// When the first upstream try started, and how long until the last try's
    /// response headers (or failure).
    pub upstream_started: Option<SystemTime>,
    pub upstream_elapsed: Option<Duration>,
    /// The authenticated consumer, when a policy identified one.
    pub consumer: Option<Arc<str>>,
    /// Subject of the verified client certificate (mTLS at the edge).
    pub client_cert: Option<Arc<str>>,
    /// The east-west edge (caller service → this workload) the request is counted
    /// on, on listeners with verified peers.
    pub mesh: Option<Arc<crate::metrics::MeshEdge>>,
}

impl AccessRecord {
    /// Request body bytes, held or streamed.
    pub fn bytes_in_total(&self) -> u64 {
        self.bytes_in
            + self
                .bytes_in_streamed
                .as_ref()
                .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// The line as written: fields in a fixed order, borrowed from the record.
#[derive(serde::Serialize)]
struct Line<'a> {
    time: String,
    request_id: &'a str,
    client: String,
    method: &'a str,
    authority: Option<&'a str>,
    path: Option<&'a str>,
    protocol: &'static str,
    status: u16,
    route: Option<&'a str>,
    consumer: Option<&'a str>,
    client_cert: Option<&'a str>,
    service: Option<&'a str>,
    upstream: Option<&'a str>,
    retries: u32,
    reason: Option<&'static str>,
    trace_id: Option<String>,
    upstream_ms: Option<f64>,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
}

impl AccessRecord {
    fn line(&self) -> Line<'_> {
        let bytes_in = self.bytes_in
            + self
                .bytes_in_streamed
                .as_ref()
                .map_or(0, |c| c.load(Ordering::Relaxed));
        Line {
            time: humantime::format_rfc3339_millis(self.time).to_string(),
            request_id: self.request_id.to_str().unwrap_or(""),
            client: self.client.to_canonical().to_string(),
            method: self.method.as_str(),
            authority: self.authority.as_ref().and_then(|v| v.to_str().ok()),
            path: self.path.as_ref().map(|p| p.as_str()),
            protocol: match self.protocol {
                Version::HTTP_09 => "HTTP/0.9",
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_2 => "HTTP/2.0",
                Version::HTTP_3 => "HTTP/3.0",
                _ => "HTTP/1.1",
            },
            status: self.status,
            route: self.route.as_deref(),
            consumer: self.consumer.as_deref(),
            client_cert: self.client_cert.as_deref(),
            service: self.service.as_deref(),
            upstream: self.upstream.as_deref(),
            retries: self.retries,
            reason: self.reason,
            trace_id: self.trace_id.map(|id| crate::trace::hex(&id)),
            upstream_ms: self.upstream_elapsed.map(millis),
            bytes_in,
            bytes_out: self.bytes_out,
            duration_ms: millis(self.duration),
        }
    }
}

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Handle to the log writer; cloned into every connection.
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    tx: Option<SyncSender<Msg>>,
    dropped: Counter,
}

/// Records queued before the request path starts dropping them (and counting that).
const QUEUE: usize = 64 * 1024;

/// How long the writer lets records accumulate after draining the queue.
const BATCH_WAIT: Duration = Duration::from_millis(10);

impl AccessLog {
    /// A log that writes nothing.
    pub fn off() -> Self {
        Self::default()
    }

    /// `stdout`, `stderr`, `off`, or a file path (appended to).
    pub fn open(path: &str) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match path {
            "off" => return Ok(Self::off()),
            "stdout" => Box::new(std::io::stdout()),
            "stderr" => Box::new(std::io::stderr()),
            file => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)?,
            ),
        };
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(rx, out))?;
        Ok(AccessLog {
            tx: Some(tx),
            dropped: Counter::default(),
        })
    }

    /// Counts dropped lines in `counter` (the registry's) from now on.
    pub fn count_drops_in(mut self, counter: Counter) -> Self {
        self.dropped = counter;
        self
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn send(&self, record: AccessRecord) {
        if let Some(tx) = &self.tx
            && let Err(TrySendError::Full(_)) = tx.try_send(Msg::Record(Box::new(record)))
        {
            self.dropped.inc();
        }
    }

    /// Queues the line of a finished L4 connection (dropped, and counted, when full).
    pub fn send_connection(&self, record: ConnectionRecord) {
        if let Some(tx) = &self.tx
            && let Err(TrySendError::Full(_)) = tx.try_send(Msg::Connection(Box::new(record)))
        {
            self.dropped.inc();
        }
    }

    /// Waits (up to `limit`) until every record sent so far is written and flushed.
    /// Called when the gateway stops, so the last lines are not lost at exit.
    pub fn flush(&self, limit: Duration) {
        if let Some(tx) = &self.tx {
            let (done, wait) = sync_channel(1);
            if tx.send(Msg::Flush(done)).is_ok() {
                let _ = wait.recv_timeout(limit);
            }
        }
    }

    /// Records lost because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

/// What the writer thread receives.
enum Msg {
    Record(Box<AccessRecord>),
    Connection(Box<ConnectionRecord>),
    /// Write everything queued before this, flush, then answer.
    Flush(SyncSender<()>),
}

/// Writes records as they come, flushing whenever the queue runs dry, then
/// pausing `BATCH_WAIT` so that under load records are taken in batches. Ends when
/// every sender is gone.
fn write_loop(rx: Receiver<Msg>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut line = Vec::with_capacity(512);
    let mut next = rx.recv().ok();
    while let Some(msg) = next {
        match msg {
            Msg::Record(record) => {
                line.clear();
                if serde_json::to_writer(&mut line, &record.line()).is_ok() {
                    line.push(b'\n');
                    let _ = out.write_all(&line);
                }
            }
            Msg::Connection(record) => {
                line.clear();
                if record.write_json(&mut line).is_ok() {
                    line.push(b'\n');
                    let _ = out.write_all(&line);
                }
            }
            Msg::Flush(done) => {
                let _ = out.flush();
                let _ = done.send(());
            }
        }
        next = match rx.try_recv() {
            Ok(m) => Some(m),
            Err(TryRecvError::Empty) => {
                let _ = out.flush();
                // Let records pile up for a moment instead of being woken for each
                // one: under load a futex wake per request costs the proxy more
                // than writing the line does. Lines still appear within BATCH_WAIT.
                std::thread::sleep(BATCH_WAIT);
                match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(TryRecvError::Empty) => rx.recv().ok(),
                    Err(TryRecvError::Disconnected) => None,
                }
            }
            Err(TryRecvError::Disconnected) => None,
        };
    }
    let _ = out.flush();
}
