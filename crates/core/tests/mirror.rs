//! Request mirroring (shadowing) against real backends: the shadow gets a copy of
//! the request, the primary is never delayed or changed by it (shadow down or
//! slow), and bodies past the cap are not mirrored. Diff mode: `mirror_diff.rs`.

mod common;
mod mirror_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Harness, dead_addr, start, wait_for};
use http::Method;
use meshgate_testkit::Backend;
use mirror_support::*;

#[tokio::test]
async fn every_request_reaches_the_shadow_unchanged_and_the_primary_is_untouched() {
    let primary = Backend::start("primary").await;
    let shadow = Server::start(echo_ok, Duration::ZERO).await;
    let h = start(&mirrored(primary.addr, shadow.addr, "percent: 100")).await;
    for i in 0..20 {
        let reply = post(&h, "/orders/7?x=1", r#"{"qty":3}"#, &format!("req-{i}")).await;
        assert_eq!(reply.status, 200);
        let echo = reply.json();
        assert_eq!(echo["backend"], "primary", "{echo}");
        assert_eq!(echo["path"], "/orders/7");
        assert_eq!(echo["headers"]["x-request-id"], format!("req-{i}"));
        assert_eq!(reply.headers["x-request-id"], format!("req-{i}").as_str());
    }
    wait_for("20 mirrored requests", Duration::from_secs(5), || {
        shadow.hits() == 20
    })
    .await;
    let mut ids: Vec<String> = shadow
        .seen()
        .into_iter()
        .map(|s| {
            assert_eq!(s.method, "POST");
            assert_eq!(s.path, "/orders/7?x=1");
            assert_eq!(s.body, r#"{"qty":3}"#);
            assert_eq!(s.host, "api.test-shadow");
            s.request_id
        })
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("req-{i}")).collect();
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(primary.hits(), 20);
    wait_for("sent metric", Duration::from_secs(5), || {
        mirror_result(&h, "r", "sent") == 20
    })
    .await;
}

#[tokio::test]
async fn half_the_requests_are_mirrored_at_percent_50() {
    let primary = Backend::start("primary").await;
    let shadow = Server::start(echo_ok, Duration::ZERO).await;
    let h = start(&mirrored(primary.addr, shadow.addr, "percent: 50")).await;
    for _ in 0..400 {
        assert_eq!(h.get("api.test", "/").await.status, 200);
    }
    // Every mirror was spawned before its primary was sent; wait for the last ones.
    wait_for("mirrors to land", Duration::from_secs(5), || {
        mirror_result(&h, "r", "sent") == shadow.hits() as u64
    })
    .await;
    let n = shadow.hits();
    // Binomial(400, 0.5): standard deviation 10; ±6 of them.
    assert!((140..=260).contains(&n), "{n} of 400 mirrored");
}

/// The 95th percentile of `n` sequential GETs through `h`, each answered 200.
async fn p95(h: &Harness, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let reply = h.get("api.test", "/").await;
        times.push(t.elapsed());
        assert_eq!(reply.status, 200);
        assert_eq!(reply.backend(), "primary");
    }
    times.sort();
    times[n * 95 / 100]
}

#[tokio::test]
async fn a_shadow_that_is_down_does_not_touch_the_primary() {
    let primary = Backend::start("primary").await;
    let with = start(&mirrored(primary.addr, dead_addr(), "timeout: 2s")).await;
    let without = start(&common::one_route(
        "",
        &common::service("svc", &[primary.addr]),
    ))
    .await;
    // Warm both paths (connections pooled) before measuring.
    p95(&with, 10).await;
    p95(&without, 10).await;
    let (mirrored_p95, plain_p95) = (p95(&with, 100).await, p95(&without, 100).await);
    assert!(
        mirrored_p95 <= plain_p95 * 3 + Duration::from_millis(50),
        "p95 with a dead shadow {mirrored_p95:?}, without a mirror {plain_p95:?}"
    );
    wait_for("110 failed mirrors", Duration::from_secs(5), || {
        mirror_result(&with, "r", "failed") == 110
    })
    .await;
    assert_eq!(mirror_result(&with, "r", "sent"), 0);
}

#[tokio::test]
async fn a_slow_shadow_does_not_delay_the_primary_and_times_out() {
    let primary = Backend::start("primary").await;
    let shadow = Server::start(echo_ok, Duration::from_secs(3)).await;
    let h = start(&mirrored(primary.addr, shadow.addr, "timeout: 300ms")).await;
    for _ in 0..5 {
        let t = Instant::now();
        let reply = h.get("api.test", "/").await;
        assert_eq!(reply.status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "primary took {:?} behind a 3 s shadow",
            t.elapsed()
        );
    }
    wait_for("5 mirror timeouts", Duration::from_secs(5), || {
        mirror_result(&h, "r", "timeout") == 5
    })
    .await;
    assert_eq!(shadow.hits(), 5);
}

#[tokio::test]
async fn bodies_over_the_cap_or_unsized_are_not_mirrored() {
    static BIG: [u8; 2000] = [b'x'; 2000];
    let primary = Backend::start("primary").await;
    let shadow = Server::start(echo_ok, Duration::ZERO).await;
    let h = start(&mirrored(primary.addr, shadow.addr, "maxBodyBytes: 1024")).await;
    let big = h
        .send(
            Method::POST,
            "api.test",
            "/big",
            &[],
            Bytes::from_static(&BIG),
        )
        .await;
    assert_eq!(big.status, 200);
    assert_eq!(big.json()["bodyBytes"], 2000, "{}", big.body);
    // Without content-length the body streams: never buffered for the mirror.
    let chunked = h
        .curl(&[
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Host: api.test",
            "--data-binary",
            "small",
            &h.url("/chunked"),
        ])
        .await;
    assert!(chunked.starts_with("HTTP/1.1 200"), "{chunked}");
    let small = post(&h, "/small", r#"{"fits":true}"#, "small-1").await;
    assert_eq!(small.status, 200);
    wait_for("the small body mirrored", Duration::from_secs(5), || {
        shadow.hits() == 1
    })
    .await;
    let seen = shadow.seen();
    assert_eq!(seen[0].path, "/small");
    assert_eq!(seen[0].body, r#"{"fits":true}"#);
    assert_eq!(mirror_result(&h, "r", "skipped"), 2);
    assert_eq!(primary.hits(), 3);
}

// ---- diff mode ----
