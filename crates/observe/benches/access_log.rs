//! What one access-log line costs the request path: `AccessLog::send` of a
//! typical proxied request's record (formatting into the log's buffer; the
//! writer thread writes to /dev/null). `cargo bench -p meshgate-observe`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderValue;
use meshgate_observe::{AccessLog, AccessRecord};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn record() -> AccessRecord {
    let head = http::Request::get("/api/v1/orders?page=2")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    AccessRecord {
        status: 200,
        bytes_out: 19,
        duration: Duration::from_micros(412),
        route: Some("all".into()),
        service: Some("backend".into()),
        upstream: Some("127.0.0.1:18080".into()),
        trace_id: Some([7; 16]),
        upstream_started: Some(SystemTime::now()),
        upstream_elapsed: Some(Duration::from_micros(301)),
        ..AccessRecord::arriving(
            &head,
            Some(HeaderValue::from_static("127.0.0.1:18084")),
            "127.0.0.1".parse().unwrap(),
            HeaderValue::from_static("5f1c0d2e8a7b4c3d9e0f1a2b3c4d5e6f"),
        )
    }
}

fn send(c: &mut Criterion) {
    let log = AccessLog::open("/dev/null").expect("open /dev/null");
    c.bench_function("access-log/send", |b| {
        b.iter(|| log.send(black_box(record())))
    });
}

criterion_group!(benches, send);
criterion_main!(benches);
