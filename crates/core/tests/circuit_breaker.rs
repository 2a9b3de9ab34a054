//! Circuit breaking through a real gateway: requests over `maxRequests`,
//! `maxPendingRequests` or `maxConnections` get 503 `overflow` at once and are
//! counted per limit; a streaming response body keeps its request slot; over
//! `maxRetries` the retry is skipped and the upstream's own answer is returned.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshgate_testkit::{Backend, Behaviour};

fn with_breaker(b: &Backend, limits: &str) -> String {
    format!(
        "{}    circuitBreaker: {limits}\n",
        common::service("svc", &[b.addr])
    )
}

/// Sends `n` requests for `path` at once; each reply with how long it took.
async fn burst(h: &common::Harness, n: usize, path: &str) -> Vec<(common::Reply, Duration)> {
    join_all((0..n).map(|_| async {
        let started = Instant::now();
        let reply = h.get("h", path).await;
        (reply, started.elapsed())
    }))
    .await
}

/// Checks the shed replies (503 `overflow`, fast) and returns (served, shed).
fn tally(results: &[(common::Reply, Duration)]) -> (usize, usize) {
    let mut served = 0;
    let mut shed = 0;
    for (r, took) in results {
        if r.status == StatusCode::OK {
            served += 1;
            continue;
        }
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
        assert_eq!(r.json()["error"], "overflow");
        assert!(*took < Duration::from_millis(200), "shed after {took:?}");
        shed += 1;
    }
    (served, shed)
}

fn overflows(h: &common::Harness, kind: &str) -> u64 {
    let text = h.gateway.metrics().encode();
    let series =
        format!("meshgate_circuit_breaker_overflows_total{{service=\"svc\",kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.parse().expect("a count"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_requests_sheds_the_excess_at_once() {
    let slow = Behaviour {
        delay: Duration::from_millis(500),
        ..Default::default()
    };
    let b = Backend::start_with("slow", slow).await;
    let h = common::start(&common::one_route(
        "",
        &with_breaker(&b, "{maxRequests: 5}"),
    ))
    .await;
    let results = burst(&h, 20, "/").await;
    let (served, shed) = tally(&results);
    assert_eq!(served + shed, 20);
    assert!((1..=5).contains(&served), "{served} served");
    assert!(shed >= 15, "{shed} shed");
    assert!(b.hits() <= 5, "{} reached the backend", b.hits());
    assert_eq!(overflows(&h, "max_requests"), shed as u64);
    let lines = h.log_lines(20).await;
    let logged = lines.iter().filter(|l| l["reason"] == "overflow").count();
    assert_eq!(logged, shed);
    // Every slot came back.
    assert_eq!(h.get("h", "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_pending_requests_counts_tries_awaiting_headers() {
    let slow = Behaviour {
        delay: Duration::from_millis(400),
        ..Default::default()
    };
    let b = Backend::start_with("slow", slow).await;
    let h = common::start(&common::one_route(
        "",
        &with_breaker(&b, "{maxPendingRequests: 2}"),
    ))
    .await;
    let (served, shed) = tally(&burst(&h, 8, "/").await);
    assert!((1..=2).contains(&served), "{served} served");
    assert_eq!(served + shed, 8);
    assert_eq!(overflows(&h, "max_pending_requests"), shed as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streaming_body_holds_its_request_slot() {
    let b = Backend::start("b").await;
    let h = common::start(&common::one_route(
        "",
        &with_breaker(&b, "{maxRequests: 1}"),
    ))
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::get(h.url("/bytes/67108864"))
        .header("host", "h")
        .body(Full::new(Bytes::new()))
        .unwrap();
    // Headers are in; the 64 MiB body is not read, so it is still streaming.
    let streaming = client.request(req).await.expect("gateway answers");
    assert_eq!(streaming.status(), StatusCode::OK);
    let r = h.get("h", "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "overflow");
    drop(streaming);
    let started = Instant::now();
    while h.get("h", "/").await.status != StatusCode::OK {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Decision: over `maxRetries` the retry is skipped and the client gets what the
/// try got (here the upstream's 503), not a gateway `overflow`.
#[tokio::test]
async fn max_retries_zero_returns_the_upstream_answer_without_retrying() {
    let failing = Behaviour {
        fail_first: usize::MAX,
        ..Default::default()
    };
    let b = Backend::start_with("flaky", failing).await;
    let retry = "    retry: {attempts: 3, backoff: {base: 1ms, max: 1ms}}";
    let h = common::start(&common::one_route(
        retry,
        &with_breaker(&b, "{maxRetries: 0}"),
    ))
    .await;
    let r = h.get("h", "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("flaky: failing request 1"), "{}", r.body);
    assert_eq!(b.hits(), 1, "no retry was sent");
    assert_eq!(overflows(&h, "max_retries"), 1);
    let lines = h.log_lines(1).await;
    assert_eq!(lines.last().expect("a log line")["retries"], 0);
}

#[tokio::test]
async fn retries_within_the_limit_still_happen() {
    let failing = Behaviour {
        fail_first: 2,
        ..Default::default()
    };
    let b = Backend::start_with("flaky", failing).await;
    let retry = "    retry: {attempts: 3, backoff: {base: 1ms, max: 1ms}}";
    let h = common::start(&common::one_route(
        retry,
        &with_breaker(&b, "{maxRetries: 1}"),
    ))
    .await;
    // One request holds one retry slot for all its retries.
    assert_eq!(h.get("h", "/").await.status, StatusCode::OK);
    assert_eq!(b.hits(), 3);
    assert_eq!(overflows(&h, "max_retries"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_connections_caps_upstream_connections() {
    let b = Backend::start("b").await;
    let h = common::start(&common::one_route(
        "",
        &with_breaker(&b, "{maxConnections: 2}"),
    ))
    .await;
    let first = burst(&h, 10, "/sleep/300").await;
    let (served, shed) = tally(&first);
    assert!((1..=2).contains(&served), "{served} served");
    assert_eq!(overflows(&h, "max_connections"), shed as u64);
    // Later requests reuse the pooled connections.
    let mut peers = HashSet::new();
    for (r, _) in first.iter().filter(|(r, _)| r.status == StatusCode::OK) {
        peers.insert(r.json()["peer"].as_str().unwrap().to_owned());
    }
    for _ in 0..10 {
        let r = h.get("h", "/").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        peers.insert(r.json()["peer"].as_str().unwrap().to_owned());
    }
    assert!(peers.len() <= 2, "{peers:?}");
    let open = h.gateway.snapshot().upstreams["svc"].connections.current();
    assert!((1..=2).contains(&open), "{open} open");
}
