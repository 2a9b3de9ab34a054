//! A service with no endpoints at all: what a control plane sends when discovery
//! (registry or DNS) found none. The config is applied, not refused; requests to
//! the service get `503 no_healthy_upstream` (HTTP/1 and HTTP/2 upstreams, with
//! health checks, outlier detection and ring hashing configured), L4 connections
//! to it are closed; and endpoints coming back serve again at once.

mod common;

use std::time::Duration;

use http::StatusCode;
use meshgate_config::Config;
use meshgate_testkit::Backend;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// One route to `svc`, whose static endpoints are `endpoints` (maybe none) and
/// which is discovered from the registry.
fn doc(endpoints: &str, extra: &str) -> String {
    common::one_route(
        "",
        &format!(
            "  - name: svc\n    endpoints: [{endpoints}]\n    discovery: {{registry: {{}}}}\n{extra}"
        ),
    )
}

fn parse(yaml: &str) -> Config {
    meshgate_config::parse_str(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

async fn assert_503(h: &common::Harness) {
    let r = h.get("h", "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.json()["error"], "no_healthy_upstream");
}

#[tokio::test]
async fn a_service_without_endpoints_answers_503_no_healthy_upstream() {
    let extra = "    loadBalancer: {policy: RingHash, hashOn: {header: x-user}}
    healthCheck: {interval: 50ms, timeout: 50ms, tcp: {}}
    outlierDetection: {consecutive5xx: 1}
";
    let h = common::start(&doc("", extra)).await;
    assert!(
        h.gateway.snapshot().upstreams["svc"]
            .endpoint_status()
            .is_empty()
    );
    assert_503(&h).await;
    let r = h
        .send(
            http::Method::GET,
            "h",
            "/",
            &[("x-user", "alice")],
            Default::default(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let lines = h.log_lines(2).await;
    assert_eq!(lines[0]["reason"], "no_healthy_upstream");
    assert_eq!(lines[0]["status"], 503);
}

#[tokio::test]
async fn an_http2_service_without_endpoints_answers_503() {
    let h = common::start(&doc("", "    protocol: HTTP2\n")).await;
    assert_503(&h).await;
}

#[tokio::test]
async fn endpoints_going_and_coming_back_through_apply() {
    let backend = Backend::start("a").await;
    let with = doc(&format!("\"{}\"", backend.addr), "");
    let h = common::start(&with).await;
    assert_eq!(h.get("h", "/").await.status, StatusCode::OK);

    // What a proxy does with a snapshot whose discovery found nothing: the
    // discovered (empty) list replaces the static endpoints.
    let mut empty = parse(&with);
    empty.services[0].endpoints.clear();
    h.gateway
        .apply(empty)
        .await
        .expect("an empty service is applied");
    assert_503(&h).await;

    h.gateway.apply(parse(&with)).await.expect("applied");
    let r = h.get("h", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.backend(), "a");
}

#[tokio::test]
async fn an_l4_listener_to_a_service_without_endpoints_closes_connections() {
    let yaml = "listeners:
  - {name: tcp, address: \"127.0.0.1:0\", protocol: TCP, l4: {service: svc}}
services:
  - name: svc
    discovery: {registry: {}}
";
    let h = common::start(yaml).await;
    let mut c = TcpStream::connect(h.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "the connection is closed without data");
}
