//! The hand-written line is byte for byte what serde_json made of the same record
//! (the serde rendering it replaced is kept here as the reference), for ordinary
//! records and for the awkward ones: nothing optional set, strings needing every
//! kind of escape, IPv6 and IPv4-mapped clients, times around second boundaries.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Version};

use super::{millis, protocol, write};
use crate::access_log::AccessRecord;

#[derive(serde::Serialize)]
struct Reference<'a> {
    time: Shown<humantime::Rfc3339Timestamp>,
    request_id: &'a str,
    client: Shown<IpAddr>,
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

struct Shown<T>(T);

impl<T: std::fmt::Display> serde::Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

fn reference(r: &AccessRecord) -> String {
    let line = Reference {
        time: Shown(humantime::format_rfc3339_millis(r.time)),
        request_id: r.request_id.to_str().unwrap_or(""),
        client: Shown(r.client.to_canonical()),
        method: r.method.as_str(),
        authority: r.authority.as_ref().and_then(|v| v.to_str().ok()),
        path: r.path.as_ref().map(|p| p.as_str()),
        protocol: protocol(r.protocol),
        status: r.status,
        route: r.route.as_deref(),
        consumer: r.consumer.as_deref(),
        client_cert: r.client_cert.as_deref(),
        service: r.service.as_deref(),
        upstream: r.upstream.as_deref(),
        retries: r.retries,
        reason: r.reason,
        trace_id: r
            .trace_id
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect()),
        upstream_ms: r.upstream_elapsed.map(millis),
        bytes_in: r.bytes_in_total(),
        bytes_out: r.bytes_out,
        duration_ms: millis(r.duration),
    };
    serde_json::to_string(&line).unwrap()
}

fn hand_written(r: &AccessRecord) -> String {
    let mut out = Vec::new();
    write(r, &mut out);
    String::from_utf8(out).unwrap()
}

fn bare(time: SystemTime, client: &str) -> AccessRecord {
    let (head, ()) = http::Request::new(()).into_parts();
    AccessRecord {
        time,
        ..AccessRecord::arriving(
            &head,
            None,
            client.parse().unwrap(),
            HeaderValue::from_static(""),
        )
    }
}

fn full(time: SystemTime) -> AccessRecord {
    let mut r = bare(time, "192.168.10.254");
    r.method = Method::from_bytes(b"PURGE").unwrap();
    r.authority = Some(HeaderValue::from_static("api.example.com:8443"));
    r.path = Some("/v1/orders/42?x=%22q%22&y=1".parse().unwrap());
    r.protocol = Version::HTTP_2;
    r.status = 503;
    r.bytes_in = 10;
    r.bytes_in_streamed = Some(Arc::new(AtomicU64::new(1 << 40)));
    r.bytes_out = u64::MAX;
    r.duration = Duration::from_nanos(1_234_567_891);
    r.route = Some("orders \"v1\" \\ main".into());
    r.service = Some("orders\n\t\r\u{8}\u{c}\u{1}\u{1f}".into());
    r.upstream = Some("10.0.0.7:8080".into());
    r.request_id = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    r.retries = u32::MAX;
    r.reason = Some("upstream_timeout");
    r.trace_id = Some(*b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\xfc\xfd\xfe\xff");
    r.upstream_elapsed = Some(Duration::from_micros(999_999));
    r.consumer = Some("mobile-app".into());
    r.client_cert = Some("CN=client, O=Ä Ö Ü".into());
    r
}

#[test]
fn every_field_set_matches_serde() {
    let time = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
    let r = full(time);
    assert_eq!(hand_written(&r), reference(&r));
}

#[test]
fn nothing_optional_set_matches_serde() {
    let r = bare(UNIX_EPOCH + Duration::from_secs(1_795_000_000), "::1");
    assert_eq!(hand_written(&r), reference(&r));
}

#[test]
fn addresses_match_serde() {
    for client in [
        "0.0.0.0",
        "255.255.255.255",
        "::ffff:10.1.2.3",
        "2001:db8::8a2e:370:7334",
        "fe80::1",
    ] {
        let r = bare(SystemTime::now(), client);
        assert_eq!(hand_written(&r), reference(&r), "{client}");
    }
}

#[test]
fn times_across_seconds_and_millis_match_serde() {
    // The cached part (up to the seconds) must follow each new second, also when
    // a later record carries an earlier time.
    let base = 1_795_000_000_000u64;
    for ms in [
        0, 1, 9, 10, 99, 100, 999, 1_000, 1_001, 61_999, 500, 86_400_000,
    ] {
        let r = bare(UNIX_EPOCH + Duration::from_millis(base + ms), "10.0.0.1");
        assert_eq!(hand_written(&r), reference(&r), "+{ms} ms");
    }
    let r = bare(UNIX_EPOCH + Duration::from_millis(12), "10.0.0.1");
    assert_eq!(hand_written(&r), reference(&r));
}

#[test]
fn durations_match_serde() {
    for nanos in [
        0u64,
        1,
        499,
        500,
        1_000,
        1_500,
        123_456,
        1_000_000_000,
        3_600_000_000_000,
    ] {
        let mut r = bare(SystemTime::now(), "10.0.0.1");
        r.duration = Duration::from_nanos(nanos);
        r.upstream_elapsed = Some(Duration::from_nanos(nanos / 3));
        assert_eq!(hand_written(&r), reference(&r), "{nanos} ns");
    }
}
