//! Active health checks through a real gateway: a killed backend stops getting
//! traffic after `unhealthyThreshold` failed checks and rejoins after
//! `healthyThreshold` passes once restarted on the same address (HTTP and TCP
//! checks); with every endpoint unhealthy the gateway answers 503
//! `no_healthy_upstream`, or in panic mode sends anyway; checkers survive a reload
//! that keeps the service and stop when it goes.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use meshgate_core::upstream::EndpointStatus;
use meshgate_testkit::Backend;

fn config(services: &str) -> String {
    common::one_route("", services)
}

/// Service `svc` on `addrs` with a 100 ms check, thresholds 2/2, and `check`
/// (`http: {…}` or `tcp: {}`) plus any extra lines of the healthCheck.
fn checked(addrs: &[SocketAddr], check: &str) -> String {
    format!(
        "{}    healthCheck:
      interval: 100ms
      timeout: 100ms
      healthyThreshold: 2
      unhealthyThreshold: 2
      {check}
",
        common::service("svc", addrs)
    )
}

fn status(h: &common::Harness) -> Vec<EndpointStatus> {
    h.gateway.snapshot().upstreams["svc"].endpoint_status()
}

/// Binds a backend on `addr` again, retrying while the old socket lets go.
async fn restart(addr: SocketAddr, name: &str) -> Backend {
    let started = Instant::now();
    loop {
        match Backend::start_on(addr, name).await {
            Ok(b) => return b,
            Err(e) if started.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot bind {addr} again: {e}"),
        }
    }
}

async fn killed_endpoint_leaves_and_rejoins(check: &str) {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let h = common::start(&config(&checked(&[a.addr, b.addr], check))).await;
    for _ in 0..10 {
        assert_eq!(h.get("h", "/").await.status, StatusCode::OK);
    }
    assert!(a.hits() > 0 && b.hits() > 0, "both serve at first");

    let b_addr = b.addr;
    drop(b);
    let out = common::wait_for("b unhealthy", Duration::from_secs(3), || {
        !status(&h)[1].healthy
    })
    .await;
    // Two failed checks 100 ms apart, plus scheduling slack.
    assert!(out < Duration::from_millis(1000), "took {out:?}");
    let metrics = h.gateway.metrics().encode();
    let gauge = format!("meshgate_endpoint_healthy{{service=\"svc\",endpoint=\"{b_addr}\"}} 0");
    assert!(metrics.contains(&gauge), "{metrics}");
    let before = a.hits();
    for _ in 0..20 {
        let r = h.get("h", "/").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.backend(), "a");
    }
    assert_eq!(a.hits(), before + 20);

    let b = restart(b_addr, "b").await;
    let back = common::wait_for("b healthy", Duration::from_secs(3), || {
        status(&h)[1].healthy
    })
    .await;
    // Two passing checks 100 ms apart (the first may come right away), plus slack.
    assert!(back < Duration::from_millis(1000), "took {back:?}");
    for _ in 0..20 {
        assert_eq!(h.get("h", "/").await.status, StatusCode::OK);
    }
    assert!(b.hits() >= 5, "b gets traffic again ({} hits)", b.hits());
    let metrics = h.gateway.metrics().encode();
    assert!(metrics.contains(&gauge.replace("} 0", "} 1")), "{metrics}");
    if check.starts_with("http") {
        assert!(
            b.health_checks() >= 2,
            "the passing checks were HTTP requests"
        );
    }
}

#[tokio::test]
async fn http_check_takes_a_dead_endpoint_out_and_back() {
    killed_endpoint_leaves_and_rejoins("http: {path: /healthz}").await;
}

#[tokio::test]
async fn tcp_check_takes_a_dead_endpoint_out_and_back() {
    killed_endpoint_leaves_and_rejoins("tcp: {}").await;
}

#[tokio::test]
async fn failing_health_endpoint_takes_a_live_backend_out() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let h = common::start(&config(&checked(&[a.addr, b.addr], "http: {}"))).await;
    b.set_health_failing(true);
    common::wait_for("b unhealthy", Duration::from_secs(3), || {
        !status(&h)[1].healthy
    })
    .await;
    let before = b.hits();
    for _ in 0..10 {
        assert_eq!(h.get("h", "/").await.backend(), "a");
    }
    assert_eq!(b.hits(), before, "b serves other paths but gets no traffic");
    b.set_health_failing(false);
    common::wait_for("b healthy", Duration::from_secs(3), || {
        status(&h)[1].healthy
    })
    .await;
}

#[tokio::test]
async fn no_healthy_endpoint_gives_503() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let h = common::start(&config(&checked(&[a.addr, b.addr], "http: {}"))).await;
    a.set_health_failing(true);
    b.set_health_failing(true);
    common::wait_for("all unhealthy", Duration::from_secs(3), || {
        status(&h).iter().all(|e| !e.healthy)
    })
    .await;
    let r = h.get("h", "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "no_healthy_upstream");
    assert_eq!(a.hits() + b.hits(), 0, "nothing was sent");
    let lines = h.log_lines(1).await;
    assert_eq!(
        lines.last().expect("a log line")["reason"],
        "no_healthy_upstream"
    );
}

#[tokio::test]
async fn panic_mode_sends_to_unhealthy_endpoints() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let services = checked(&[a.addr, b.addr], "http: {}\n      panicMode: true");
    let h = common::start(&config(&services)).await;
    a.set_health_failing(true);
    b.set_health_failing(true);
    common::wait_for("all unhealthy", Duration::from_secs(3), || {
        status(&h).iter().all(|e| !e.healthy)
    })
    .await;
    for _ in 0..10 {
        assert_eq!(h.get("h", "/").await.status, StatusCode::OK);
    }
    assert!(
        a.hits() > 0 && b.hits() > 0,
        "panic mode uses every endpoint"
    );
}

#[tokio::test]
async fn reload_keeps_checkers_of_an_unchanged_service_and_stops_removed_ones() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let services = checked(&[a.addr, b.addr], "http: {}");
    let h = common::start(&config(&services)).await;
    b.set_health_failing(true);
    common::wait_for("b unhealthy", Duration::from_secs(3), || {
        !status(&h)[1].healthy
    })
    .await;

    // Same service, one more route: the upstream is reused with its health state.
    let more = config(&services).replace(
        "services:",
        "  - name: r2\n    hostnames: [other.example]\n    backendRefs: [{name: svc}]\nservices:",
    );
    h.gateway
        .apply(meshgate_config::parse_str(&more, "t.yaml").unwrap())
        .await
        .unwrap();
    assert!(!status(&h)[1].healthy, "health state survived the reload");
    let checks = b.health_checks();
    common::wait_for("checks go on", Duration::from_secs(3), || {
        b.health_checks() > checks + 1
    })
    .await;

    // The service now points elsewhere: the old checkers stop.
    let c = Backend::start("c").await;
    let moved = config(&common::service("svc", &[c.addr]));
    h.gateway
        .apply(meshgate_config::parse_str(&moved, "t.yaml").unwrap())
        .await
        .unwrap();
    assert_eq!(h.get("h", "/").await.backend(), "c");
    let (a_checks, b_checks) = (a.health_checks(), b.health_checks());
    // Absence can only be shown by waiting: several check intervals.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(a.health_checks() <= a_checks + 1, "a still checked");
    assert!(b.health_checks() <= b_checks + 1, "b still checked");
}
