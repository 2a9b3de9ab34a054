//! Active gRPC health checks through a real gateway: two tonic-health servers,
//! one flipped to NOT_SERVING by its reporter leaves the rotation after
//! `unhealthyThreshold` failed `grpc.health.v1.Health/Check` calls and comes back
//! after `healthyThreshold` passes once SERVING again; an unknown checked service
//! (NOT_FOUND) fails the check too.

mod common;
mod grpc_support;

use std::net::SocketAddr;
use std::time::Duration;

use meshgate_core::upstream::EndpointStatus;
use tonic::Code;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn config(a: SocketAddr, b: SocketAddr, checked: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - name: health
    matches: [{{path: {{type: PathPrefix, value: /grpc.health.v1.Health}}}}]
    backendRefs: [{{name: svc}}]
services:
  - name: svc
    protocol: HTTP2
    endpoints: [\"{a}\", \"{b}\"]
    healthCheck:
      interval: 100ms
      timeout: 100ms
      healthyThreshold: 2
      unhealthyThreshold: 2
      grpc: {{service: {checked}}}
"
    )
}

fn status(h: &common::Harness) -> Vec<EndpointStatus> {
    h.gateway.snapshot().upstreams["svc"].endpoint_status()
}

async fn client(h: &common::Harness) -> HealthClient<tonic::transport::Channel> {
    grpc_support::health_client(h.addr).await
}

/// Which server answered a call: each knows only its own name.
async fn who(c: &mut HealthClient<tonic::transport::Channel>) -> &'static str {
    let req = HealthCheckRequest {
        service: "a".into(),
    };
    match c.check(req).await {
        Ok(_) => "a",
        Err(e) if e.code() == Code::NotFound => "b",
        Err(e) => panic!("call failed: {e:?}"),
    }
}

#[tokio::test]
async fn not_serving_endpoint_leaves_and_rejoins() {
    let (a, _ra) = grpc_support::health_server(&["greeter", "a"]).await;
    let (b, rb) = grpc_support::health_server(&["greeter", "b"]).await;
    let h = common::start(&config(a, b, "greeter")).await;
    let mut c = client(&h).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        seen.insert(who(&mut c).await);
    }
    assert_eq!(seen.len(), 2, "both serve at first");

    rb.set_service_status("greeter", ServingStatus::NotServing)
        .await;
    common::wait_for("b unhealthy", Duration::from_secs(3), || {
        !status(&h)[1].healthy
    })
    .await;
    assert!(status(&h)[0].healthy, "a still passes");
    for _ in 0..20 {
        assert_eq!(who(&mut c).await, "a", "b is out of the rotation");
    }

    rb.set_service_status("greeter", ServingStatus::Serving)
        .await;
    common::wait_for("b healthy", Duration::from_secs(3), || {
        status(&h)[1].healthy
    })
    .await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        seen.insert(who(&mut c).await);
    }
    assert!(seen.contains("b"), "b gets traffic again");
}

#[tokio::test]
async fn unknown_checked_service_fails_the_check() {
    let (a, _ra) = grpc_support::health_server(&["greeter", "a"]).await;
    let (b, _rb) = grpc_support::health_server(&["greeter", "b"]).await;
    let h = common::start(&config(a, b, "nope")).await;
    common::wait_for("both unhealthy", Duration::from_secs(3), || {
        status(&h).iter().all(|s| !s.healthy)
    })
    .await;
    // Every endpoint out: the gateway's own 503, as a gRPC UNAVAILABLE.
    let err = client(&h)
        .await
        .check(HealthCheckRequest {
            service: "a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let log = h.log_lines(1).await;
    assert_eq!(log[0]["reason"], "no_healthy_upstream");
}

#[tokio::test]
async fn whole_server_check_with_default_service() {
    let (a, ra) = grpc_support::health_server(&["greeter", "a"]).await;
    let (b, _rb) = grpc_support::health_server(&["greeter", "b"]).await;
    let h = common::start(&config(a, b, "\"\"")).await;
    // tonic-health reports the server as a whole ("") SERVING by default.
    ra.set_service_status("", ServingStatus::NotServing).await;
    common::wait_for("a unhealthy", Duration::from_secs(3), || {
        !status(&h)[0].healthy
    })
    .await;
    assert!(status(&h)[1].healthy);
}
