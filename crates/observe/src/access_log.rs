//! The access log: one JSON line per request. The request path formats its line
//! into a buffer of its own (no allocation, no lock shared with other workers in
//! the common case); a dedicated thread writes the buffers in batches
//! ([`writer`]), so the request path never waits on I/O.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, SystemTime};

use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Version};
use prometheus_client::metrics::counter::Counter;

mod connection;
mod line;
mod writer;
pub use connection::ConnectionRecord;
use writer::Sink;

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
    /// The record of a request as it arrives, timed now: what its head says
    /// (`authority` as the caller found it: the URI's or the `host` header), nothing
    /// yet of what became of it (status 0, no route, upstream, bytes or trace).
    pub fn arriving(
        head: &http::request::Parts,
        authority: Option<HeaderValue>,
        client: IpAddr,
        request_id: HeaderValue,
    ) -> Self {
        AccessRecord {
            time: SystemTime::now(),
            method: head.method.clone(),
            authority,
            path: head.uri.path_and_query().cloned(),
            protocol: head.version,
            client,
            status: 0,
            bytes_in: 0,
            bytes_in_streamed: None,
            bytes_out: 0,
            duration: Duration::ZERO,
            route: None,
            service: None,
            upstream: None,
            request_id,
            retries: 0,
            reason: None,
            trace_id: None,
            route_metrics: None,
            upstream_started: None,
            upstream_elapsed: None,
            consumer: None,
            client_cert: None,
            mesh: None,
        }
    }

    /// Request body bytes, held or streamed.
    pub fn bytes_in_total(&self) -> u64 {
        self.bytes_in
            + self
                .bytes_in_streamed
                .as_ref()
                .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Handle to the log; cloned wherever lines are written from.
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    sink: Option<Handle>,
    dropped: Counter,
}

/// A holder of the sink; the writer thread ends once the last one is dropped.
#[derive(Debug, Clone)]
struct Handle(Arc<Sink>);

impl Drop for Handle {
    fn drop(&mut self) {
        // The writer may be parked with nothing to do: let it see it is the last.
        self.0.wake();
    }
}

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
        Ok(AccessLog {
            sink: Some(Handle(Sink::start(out)?)),
            dropped: Counter::default(),
        })
    }

    /// Counts dropped lines in `counter` (the registry's) from now on.
    pub fn count_drops_in(mut self, counter: Counter) -> Self {
        self.dropped = counter;
        self
    }

    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Formats the record's line into the log's buffer (dropped, and counted,
    /// when the writer is too far behind).
    pub fn send(&self, record: AccessRecord) {
        if let Some(Handle(sink)) = &self.sink
            && !sink.append(|buf| {
                line::write(&record, buf);
                true
            })
        {
            self.dropped.inc();
        }
    }

    /// Formats the line of a finished L4 connection (see [`AccessLog::send`]).
    pub fn send_connection(&self, record: ConnectionRecord) {
        if let Some(Handle(sink)) = &self.sink
            && !sink.append(|buf| record.write_json(buf).is_ok())
        {
            self.dropped.inc();
        }
    }

    /// Waits (up to `limit`) until every line sent so far is written and flushed.
    /// Called when the gateway stops, so the last lines are not lost at exit.
    pub fn flush(&self, limit: Duration) {
        if let Some(Handle(sink)) = &self.sink {
            let (done, wait) = sync_channel(1);
            sink.flush(done);
            let _ = wait.recv_timeout(limit);
        }
    }

    /// Lines lost because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}
