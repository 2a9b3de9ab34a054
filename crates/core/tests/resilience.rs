//! Upstream trouble through a real gateway: timeouts (per try and whole request),
//! retries (failing, down and resetting backends), idempotency and body rules, the
//! retry budget. Each failure must give the right status and a reason in the log.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use meshgate_testkit::{Backend, Behaviour};

fn last_log(lines: &[serde_json::Value]) -> &serde_json::Value {
    lines.last().expect("a log line")
}

#[tokio::test]
async fn per_try_timeout_gives_504_with_reason() {
    let b = Backend::start("slow").await;
    let yaml = common::one_route(
        "    timeouts: {backendRequest: 200ms}",
        &common::service("svc", &[b.addr]),
    );
    let h = common::start(&yaml).await;
    let started = Instant::now();
    let r = h.get("h", "/sleep/2000").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "timed out early: {:?}",
        started.elapsed()
    );
    assert_eq!(r.json()["error"], "upstream_timeout");
    assert_eq!(
        last_log(&h.log_lines(1).await)["reason"],
        "upstream_timeout"
    );
    // A fast request on the same route is unaffected.
    assert_eq!(h.get("h", "/sleep/10").await.status, StatusCode::OK);
}

#[tokio::test]
async fn request_timeout_covers_all_tries() {
    let b = Backend::start("slow").await;
    let extra = "    timeouts: {request: 300ms, backendRequest: 200ms}\n    retry: {attempts: 5, retryOn: [timeout], backoff: {base: 1ms, max: 1ms}}";
    let h = common::start(&common::one_route(
        extra,
        &common::service("svc", &[b.addr]),
    ))
    .await;
    let started = Instant::now();
    let r = h.get("h", "/sleep/1000").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.json()["error"], "request_timeout");
    assert!(started.elapsed() < Duration::from_millis(900));
    assert!(
        b.hits() >= 2,
        "the per-try timeout was retried before the request timeout hit"
    );
}

#[tokio::test]
async fn retries_a_backend_that_fails_the_first_times() {
    let b = Backend::start_with(
        "flaky",
        Behaviour {
            fail_first: 2,
            ..Default::default()
        },
    )
    .await;
    let extra = "    retry: {attempts: 2, backoff: {base: 5ms, max: 20ms}}";
    let h = common::start(&common::one_route(
        extra,
        &common::service("svc", &[b.addr]),
    ))
    .await;
    let r = h.get("h", "/x").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(b.hits(), 3);
    let log = h.log_lines(1).await;
    assert_eq!(last_log(&log)["retries"], 2);
    assert_eq!(last_log(&log)["status"], 200);
}

#[tokio::test]
async fn too_few_attempts_return_the_upstream_failure() {
    let b = Backend::start_with(
        "flaky",
        Behaviour {
            fail_first: 5,
            ..Default::default()
        },
    )
    .await;
    let extra = "    retry: {attempts: 2, backoff: {base: 1ms, max: 2ms}}";
    let h = common::start(&common::one_route(
        extra,
        &common::service("svc", &[b.addr]),
    ))
    .await;
    let r = h.get("h", "/x").await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the upstream's own 503 after the last try"
    );
    assert_eq!(b.hits(), 3);
}

#[tokio::test]
async fn down_endpoint_is_retried_on_another_and_all_down_is_503() {
    let up = Backend::start("up").await;
    let dead = common::dead_addr();
    let extra = "    retry: {attempts: 2, backoff: {base: 1ms, max: 2ms}}";
    let h = common::start(&common::one_route(
        extra,
        &common::service("svc", &[dead, up.addr]),
    ))
    .await;
    for _ in 0..10 {
        let r = h.get("h", "/x").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let log = h.log_lines(10).await;
    let retried = log.iter().filter(|l| l["retries"] == 1).count();
    assert!(
        retried >= 2,
        "round robin sent some first tries to the dead endpoint: {retried}"
    );

    let only_dead = common::one_route("", &common::service("svc", &[common::dead_addr()]));
    let h = common::start(&only_dead).await;
    let r = h.get("h", "/x").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "upstream_connect_failure");
    assert_eq!(
        last_log(&h.log_lines(1).await)["reason"],
        "upstream_connect_failure"
    );
}

#[tokio::test]
async fn connection_reset_is_502_and_retried_when_asked() {
    let b = Backend::start("resetting").await;
    let h = common::start(&common::one_route("", &common::service("svc", &[b.addr]))).await;
    let r = h.get("h", "/drop").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.json()["error"], "upstream_reset");
    assert_eq!(b.hits(), 1, "no retry policy, no retry");

    let extra = "    retry: {attempts: 3, retryOn: [reset], backoff: {base: 1ms, max: 2ms}}";
    let b = Backend::start("resetting").await;
    let h = common::start(&common::one_route(
        extra,
        &common::service("svc", &[b.addr]),
    ))
    .await;
    assert_eq!(h.get("h", "/drop").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(b.hits(), 4);
}

#[tokio::test]
async fn non_idempotent_methods_are_retried_only_when_allowed() {
    let b = Backend::start_with(
        "flaky",
        Behaviour {
            fail_first: 1,
            ..Default::default()
        },
    )
    .await;
    let extra = "    retry: {attempts: 2, backoff: {base: 1ms, max: 2ms}}";
    let h = common::start(&common::one_route(
        extra,
        &common::service("svc", &[b.addr]),
    ))
    .await;
    let r = h
        .send(Method::POST, "h", "/orders", &[], Bytes::from_static(b"{}"))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(b.hits(), 1);

    let b = Backend::start_with(
        "flaky",
        Behaviour {
            fail_first: 1,
            ..Default::default()
        },
    )
    .await;
    let extra =
        "    retry: {attempts: 2, retryNonIdempotent: true, backoff: {base: 1ms, max: 2ms}}";
    let h = common::start(&common::one_route(
        extra,
        &common::service("svc", &[b.addr]),
    ))
    .await;
    let r = h
        .send(
            Method::POST,
            "h",
            "/orders",
            &[],
            Bytes::from_static(b"{\"id\":1}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["bodyBytes"], 8, "the held body was replayed whole");
    assert_eq!(b.hits(), 2);
}

#[tokio::test]
async fn bodies_over_the_buffer_limit_are_streamed_and_never_retried() {
    let b = Backend::start_with(
        "flaky",
        Behaviour {
            fail_first: 1,
            ..Default::default()
        },
    )
    .await;
    let extra = "    retry: {attempts: 2, retryNonIdempotent: true, bodyBufferBytes: 1024, backoff: {base: 1ms, max: 2ms}}";
    let h = common::start(&common::one_route(
        extra,
        &common::service("svc", &[b.addr]),
    ))
    .await;
    let big = Bytes::from(vec![b'x'; 4096]);
    let r = h.send(Method::PUT, "h", "/blob", &[], big.clone()).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not retried: the body was streamed"
    );
    assert_eq!(b.hits(), 1);
    let r = h.send(Method::PUT, "h", "/blob", &[], big).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["bodyBytes"], 4096);
    let log = h.log_lines(2).await;
    assert_eq!(last_log(&log)["bytes_in"], 4096);
}

#[tokio::test]
async fn retry_budget_caps_retries_during_an_outage() {
    // Every request fails; without a budget each would be retried 3 times.
    let b = Backend::start_with(
        "down",
        Behaviour {
            fail_first: usize::MAX,
            ..Default::default()
        },
    )
    .await;
    let extra = "    retry: {attempts: 3, backoff: {base: 1ms, max: 1ms}}";
    let svc = format!(
        "{}    retryBudget: {{percent: 20, minRetriesPerSecond: 1, window: 10s}}\n",
        common::service("svc", &[b.addr])
    );
    let h = common::start(&common::one_route(extra, &svc)).await;
    let requests = 200;
    for _ in 0..requests {
        assert_eq!(
            h.get("h", "/x").await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let retries = b.hits() - requests;
    println!(
        "{requests} requests during an outage caused {retries} retries (unbudgeted: {})",
        requests * 3
    );
    // 20% of 200 requests, plus the reserve of 1/s over the 10s window.
    assert!(retries > 0, "some retries are allowed");
    assert!(
        retries <= requests / 5 + 10,
        "budget exceeded: {retries} retries"
    );

    // With percent 0 and no reserve nothing is retried at all.
    let b = Backend::start_with(
        "flaky",
        Behaviour {
            fail_first: 1,
            ..Default::default()
        },
    )
    .await;
    let svc = format!(
        "{}    retryBudget: {{percent: 0, minRetriesPerSecond: 0}}\n",
        common::service("svc", &[b.addr])
    );
    let h = common::start(&common::one_route(extra, &svc)).await;
    assert_eq!(
        h.get("h", "/x").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(b.hits(), 1);
}
