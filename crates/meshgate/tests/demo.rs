//! `meshgate demo --port P` as a user runs it: it comes up with its own backends,
//! answers the documented curls (proxied, direct response, no route), logs each
//! request to stdout, and stops cleanly on SIGINT.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Proc, TempDir, curl, header, refused, split_response};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_its_routes_and_stops_on_sigint() {
    let dir = TempDir::new("demo");
    let port = meshgate_testkit::free_port();
    let mut demo = Proc::spawn(&dir, &["demo", "--port", &port.to_string()]);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    demo.wait_listening(addr).await;
    let base = format!("http://{addr}");

    let out = curl(&["-i", &format!("{base}/orders/1")]).await;
    let (status, headers, body) = split_response(&out.stdout);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert_eq!(header(&headers, "x-served-by"), Some("meshgate-demo"));
    let echo: Value = serde_json::from_str(&body).expect("echo JSON");
    let backend = echo["backend"].as_str().expect("a backend field");
    assert!(
        ["orders-v1", "orders-v2"].contains(&backend),
        "unexpected backend {backend}"
    );
    assert_eq!(echo["path"], "/orders/1");

    let out = curl(&["-i", &format!("{base}/maintenance")]).await;
    let (status, headers, body) = split_response(&out.stdout);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(body, "{\"message\": \"down for maintenance\"}\n");
    assert_eq!(header(&headers, "retry-after"), Some("120"));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));

    let out = curl(&["-i", &format!("{base}/nowhere")]).await;
    let (status, headers, body) = split_response(&out.stdout);
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let err: Value = serde_json::from_str(&body).expect("error JSON");
    assert_eq!(err["error"], "no_route");
    assert_eq!(err["status"], 404);

    demo.signal("INT");
    let exit = demo
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("demo did not stop on SIGINT:\n{}", demo.stderr_text()));
    assert_eq!(exit.code(), Some(0), "{}", demo.stderr_text());
    assert!(refused(addr).await, "the demo still listens on {addr}");

    // The access log went to stdout: one JSON line per request, in order.
    let stdout = demo.stdout_text();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let seen: Vec<(&str, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["path"].as_str().unwrap_or(""),
                l["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("/orders/1", 200), ("/maintenance", 503), ("/nowhere", 404)]
    );
    assert_eq!(lines[0]["route"], "orders");
    assert_eq!(lines[1]["route"], "maintenance");
    // The printed curl commands name the real port.
    let stderr = demo.stderr_text();
    assert!(
        stderr.contains(&format!("curl -s {base}/orders/42")),
        "{stderr}"
    );
}
