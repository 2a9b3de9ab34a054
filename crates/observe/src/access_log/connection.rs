//! The access log record of one L4 connection (`TCP` and `TLS` passthrough
//! listeners): one JSON line when the connection ends. An HTTP [`super::AccessRecord`]
//! cannot say this (it has a method, status and HTTP version, and no listener or
//! server name), so connections have their own record, written by the same thread.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Everything a connection's log line says; filled by the connection's task and
/// formatted by the writer thread.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    /// When the connection was accepted.
    pub time: SystemTime,
    /// `tcp` or `tls` (passthrough).
    pub protocol: &'static str,
    pub listener: Arc<str>,
    pub client: IpAddr,
    /// The server name (SNI) of the ClientHello, for `tls`.
    pub server_name: Option<Box<str>>,
    pub service: Option<Arc<str>>,
    /// The endpoint connected to (or last tried).
    pub upstream: Option<Arc<str>>,
    /// Bytes from the client to the upstream (the ClientHello included).
    pub bytes_in: u64,
    /// Bytes from the upstream to the client.
    pub bytes_out: u64,
    /// Time to connect to the upstream, when it connected.
    pub connect: Option<Duration>,
    /// From accept to close.
    pub duration: Duration,
    /// Why the connection was refused or ended abnormally (`idle_timeout`,
    /// `upstream_connect_failure`, `unknown_sni`, …); absent for a normal close.
    pub reason: Option<&'static str>,
}

/// The line as written: fields in a fixed order, borrowed from the record.
#[derive(serde::Serialize)]
struct Line<'a> {
    time: String,
    protocol: &'static str,
    listener: &'a str,
    client: String,
    server_name: Option<&'a str>,
    service: Option<&'a str>,
    upstream: Option<&'a str>,
    reason: Option<&'static str>,
    connect_ms: Option<f64>,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
}

impl ConnectionRecord {
    /// Appends the record as one JSON object (no newline) to `out`.
    pub(super) fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let line = Line {
            time: humantime::format_rfc3339_millis(self.time).to_string(),
            protocol: self.protocol,
            listener: &self.listener,
            client: self.client.to_canonical().to_string(),
            server_name: self.server_name.as_deref(),
            service: self.service.as_deref(),
            upstream: self.upstream.as_deref(),
            reason: self.reason,
            connect_ms: self.connect.map(super::line::millis),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            duration_ms: super::line::millis(self.duration),
        };
        serde_json::to_writer(out, &line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_every_field_in_order() {
        let record = ConnectionRecord {
            time: SystemTime::UNIX_EPOCH,
            protocol: "tls",
            listener: "edge".into(),
            client: "::ffff:10.0.0.1".parse().unwrap(),
            server_name: Some("a.test".into()),
            service: Some("a".into()),
            upstream: Some("10.0.0.2:443".into()),
            bytes_in: 517,
            bytes_out: 4096,
            connect: Some(Duration::from_micros(1500)),
            duration: Duration::from_millis(20),
            reason: None,
        };
        let mut out = Vec::new();
        record.write_json(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"time":"1970-01-01T00:00:00.000Z","protocol":"tls","listener":"edge","client":"10.0.0.1","server_name":"a.test","service":"a","upstream":"10.0.0.2:443","reason":null,"connect_ms":1.5,"bytes_in":517,"bytes_out":4096,"duration_ms":20.0}"#
        );
    }
}
