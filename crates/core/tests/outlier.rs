//! Outlier detection through a real gateway: an endpoint answering 503 is ejected
//! after `consecutive5xx` failures and comes back after the ejection time, which
//! grows with each ejection; connect failures eject too; `maxEjectionPercent`
//! keeps endpoints in; the failure rate over a window ejects.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use meshgate_core::upstream::EndpointStatus;
use meshgate_testkit::{Backend, Behaviour};

fn config(addrs: &[SocketAddr], outlier: &str) -> String {
    let service = format!(
        "{}    outlierDetection: {outlier}
",
        common::service("svc", addrs)
    );
    common::one_route("", &service)
}

async fn failing(name: &str) -> Backend {
    let always = Behaviour {
        fail_first: usize::MAX,
        ..Default::default()
    };
    Backend::start_with(name, always).await
}

fn status(h: &common::Harness) -> Vec<EndpointStatus> {
    h.gateway.snapshot().upstreams["svc"].endpoint_status()
}

fn ejected(h: &common::Harness) -> Vec<bool> {
    status(h).iter().map(|e| e.ejected).collect()
}

/// Sends requests until endpoint `i` is ejected (at most `max`); returns when.
async fn send_until_ejected(h: &common::Harness, i: usize, max: usize) -> Instant {
    for _ in 0..max {
        h.get("h", "/").await;
        if ejected(h)[i] {
            return Instant::now();
        }
    }
    panic!(
        "endpoint {i} not ejected after {max} requests: {:?}",
        status(h)
    );
}

#[tokio::test]
async fn consecutive_5xx_ejects_for_a_growing_time() {
    let good = Backend::start("good").await;
    let bad = failing("bad").await;
    // Long enough that the ten requests below finish inside the first ejection even
    // on two busy cores (a full test run), short enough to keep the test quick.
    let outlier = "{consecutive5xx: 3, baseEjectionTime: 1s, maxEjectionTime: 10s}";
    let h = common::start(&config(&[good.addr, bad.addr], outlier)).await;

    let ejected_at = send_until_ejected(&h, 1, 20).await;
    assert_eq!(bad.hits(), 3, "ejected at the third 503 in a row");
    for _ in 0..10 {
        let r = h.get("h", "/").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.backend(), "good");
    }
    assert_eq!(bad.hits(), 3, "no traffic while ejected");
    let first = ejected_at.elapsed()
        + common::wait_for("first return", Duration::from_secs(6), || !ejected(&h)[1]).await;
    assert!(
        (Duration::from_millis(950)..Duration::from_millis(2000)).contains(&first),
        "first ejection lasted {first:?}, want ~1s"
    );

    // Still failing: three more 503s eject it again, for twice as long.
    let ejected_at = send_until_ejected(&h, 1, 20).await;
    assert_eq!(bad.hits(), 6);
    let second = ejected_at.elapsed()
        + common::wait_for("second return", Duration::from_secs(6), || !ejected(&h)[1]).await;
    assert!(
        (Duration::from_millis(1950)..Duration::from_millis(3200)).contains(&second),
        "second ejection lasted {second:?}, want ~2s"
    );

    let metrics = h.gateway.metrics().encode();
    assert!(
        metrics.contains("meshgate_outlier_ejections_total{service=\"svc\"} 2"),
        "{metrics}"
    );
    let gauge = format!(
        "meshgate_endpoint_ejected{{service=\"svc\",endpoint=\"{}\"}} 0",
        bad.addr
    );
    assert!(metrics.contains(&gauge), "{metrics}");
}

#[tokio::test]
async fn ejected_gauge_is_reset_without_traffic() {
    let good = Backend::start("good").await;
    let bad = failing("bad").await;
    let outlier = "{consecutive5xx: 2, baseEjectionTime: 300ms}";
    let h = common::start(&config(&[good.addr, bad.addr], outlier)).await;
    send_until_ejected(&h, 1, 10).await;
    let gauge = |v: u8| {
        format!(
            "meshgate_endpoint_ejected{{service=\"svc\",endpoint=\"{}\"}} {v}",
            bad.addr
        )
    };
    assert!(h.gateway.metrics().encode().contains(&gauge(1)));
    // No request is sent: the sweeper alone must notice the end of the ejection.
    let took = common::wait_for("gauge back to 0", Duration::from_secs(3), || {
        h.gateway.metrics().encode().contains(&gauge(0))
    })
    .await;
    assert!(took < Duration::from_millis(1300), "took {took:?}");
}

#[tokio::test]
async fn connect_failures_eject() {
    let good = Backend::start("good").await;
    let dead = common::dead_addr();
    let outlier = "{consecutiveFailures: 2, consecutive5xx: 0}";
    let h = common::start(&config(&[good.addr, dead], outlier)).await;
    send_until_ejected(&h, 1, 10).await;
    for _ in 0..10 {
        assert_eq!(h.get("h", "/").await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn max_ejection_percent_keeps_the_second_bad_endpoint() {
    let good = Backend::start("good").await;
    let bad1 = failing("bad1").await;
    let bad2 = failing("bad2").await;
    let outlier = "{consecutive5xx: 3, baseEjectionTime: 10s, maxEjectionPercent: 50}";
    let h = common::start(&config(&[good.addr, bad1.addr, bad2.addr], outlier)).await;
    for _ in 0..30 {
        h.get("h", "/").await;
    }
    let out = ejected(&h);
    assert_eq!(out.iter().filter(|&&e| e).count(), 1, "{out:?}");
    assert!(!out[0], "the good endpoint stays");
    // The one left in keeps failing and keeps getting its share.
    let kept = if out[1] { &bad2 } else { &bad1 };
    let before = kept.hits();
    for _ in 0..10 {
        h.get("h", "/").await;
    }
    assert!(kept.hits() > before);
    let metrics = h.gateway.metrics().encode();
    assert!(
        metrics.contains("meshgate_outlier_ejections_total{service=\"svc\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn failure_rate_over_a_window_ejects() {
    let good = Backend::start("good").await;
    let bad = failing("bad").await;
    let outlier = "{consecutive5xx: 0, consecutiveFailures: 0, baseEjectionTime: 10s,
      failureRate: {thresholdPercent: 50, minimumRequests: 4, window: 200ms}}";
    let h = common::start(&config(&[good.addr, bad.addr], outlier)).await;
    // Consecutive ejection is off: only the window verdict can eject.
    let started = Instant::now();
    while !ejected(&h)[1] {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "not ejected: {:?}",
            status(&h)
        );
        h.get("h", "/").await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(bad.hits() >= 4, "judged on at least minimumRequests");
    assert!(!ejected(&h)[0], "the good endpoint is not ejected");
    for _ in 0..10 {
        assert_eq!(h.get("h", "/").await.status, StatusCode::OK);
    }
}
