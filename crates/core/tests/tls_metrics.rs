//! What operations see of TLS termination: failed handshakes of `HTTPS` listeners
//! counted in `meshgate_tls_handshake_failures_total{listener, reason}` (real curl
//! with a wrong SNI, no SNI, an untrusted CA, an old TLS version, no or a foreign
//! client certificate; raw TCP clients that send plain HTTP, hang up, or stay
//! silent past `handshakeTimeout`), and `httpsRedirect` answers written to the
//! access log and counted in the request metrics like any other response.

mod common;
mod tls_support;

use std::time::Duration;

use common::{Harness, start};
use meshgate_testkit::Backend;
use meshgate_testkit::certs::TestCa;
use tls_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(5);

fn failures_line(listener: &str, reason: &str, n: u64) -> String {
    format!(
        "meshgate_tls_handshake_failures_total{{listener=\"{listener}\",reason=\"{reason}\"}} {n}\n"
    )
}

/// Waits until the metrics text contains `line` (the server counts a failure
/// when its side of the handshake ends, which may be after the client's).
async fn wait_metric(h: &Harness, line: &str) {
    let metrics = h.gateway.metrics().clone();
    let waited = tokio::time::timeout(WAIT, async {
        while !metrics.encode().contains(line) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "no {line:?} in:\n{}",
        grep(&metrics.encode(), "tls_handshake")
    );
}

fn grep(text: &str, word: &str) -> String {
    text.lines()
        .filter(|l| l.contains(word))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn sni_version_and_trust_failures_are_counted_by_reason() {
    let ca = TestCa::new("tls-metrics");
    let a = ca.server_cert("a", &["a.test"]);
    let backend = Backend::start("app").await;
    let tls = format!(
        "{{certificates: [{}], sniStrict: true, minVersion: TLS1_3}}",
        cert_entry(&a)
    );
    let h = start(&https_config(&tls, backend.addr)).await;
    let cacert = ca.ca_path();
    let cacert = cacert.to_str().unwrap();

    let (resolve, url) = resolve_url(&h, "a.test", "/");
    let (ok, _, err) = curl(&["--cacert", cacert, "--resolve", &resolve, &url]).await;
    assert!(ok, "{err}");

    // A name no certificate serves, twice.
    let (resolve, url) = resolve_url(&h, "other.test", "/");
    for _ in 0..2 {
        let (ok, _, _) = curl(&["--cacert", cacert, "--resolve", &resolve, &url]).await;
        assert!(!ok);
    }
    wait_metric(&h, &failures_line("web", "unknown_sni", 2)).await;

    // An IP literal: curl sends no SNI.
    let url = format!("https://{}/", h.addr);
    let (ok, _, _) = curl(&["--cacert", cacert, &url]).await;
    assert!(!ok);
    wait_metric(&h, &failures_line("web", "no_sni", 1)).await;

    // curl does not trust the test CA: it aborts with an alert.
    let (resolve, url) = resolve_url(&h, "a.test", "/");
    let (ok, _, _) = curl(&["--resolve", &resolve, &url]).await;
    assert!(!ok);
    wait_metric(&h, &failures_line("web", "certificate_rejected", 1)).await;

    // TLS 1.2 at most against minVersion TLS1_3.
    let (ok, _, _) = curl(&[
        "--tls-max",
        "1.2",
        "--cacert",
        cacert,
        "--resolve",
        &resolve,
        &url,
    ])
    .await;
    assert!(!ok);
    wait_metric(&h, &failures_line("web", "protocol_version", 1)).await;

    // The successful handshake counted nowhere.
    let text = h.gateway.metrics().encode();
    let total: u64 = text
        .lines()
        .filter(|l| l.starts_with("meshgate_tls_handshake_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(total, 5, "{}", grep(&text, "tls_handshake"));
    h.gateway.shutdown().await;
}

#[tokio::test]
async fn client_certificate_failures_are_counted() {
    let ca = TestCa::new("tls-metrics-mtls");
    let a = ca.server_cert("a", &["a.test"]);
    let alice = ca.client_cert("alice", "alice", &[]);
    let stranger = TestCa::new("tls-metrics-stranger");
    let mallory = stranger.client_cert("mallory", "mallory", &[]);
    let backend = Backend::start("app").await;
    let tls = format!(
        "{{certificates: [{}], clientAuth: {{caFile: \"{}\", mode: Require}}}}",
        cert_entry(&a),
        ca.ca_path().display()
    );
    let h = start(&https_config(&tls, backend.addr)).await;
    let cacert = ca.ca_path();
    let cacert = cacert.to_str().unwrap();
    let (resolve, url) = resolve_url(&h, "a.test", "/");
    let with = |c: &meshgate_testkit::certs::Issued| {
        [
            "--cert".to_owned(),
            c.cert.display().to_string(),
            "--key".to_owned(),
            c.key.display().to_string(),
        ]
    };

    let (ok, _, _) = curl(&["--cacert", cacert, "--resolve", &resolve, &url]).await;
    assert!(!ok, "no client certificate must be refused");
    wait_metric(&h, &failures_line("web", "no_certificate", 1)).await;

    let m = with(&mallory);
    let mut args = vec!["--cacert", cacert, "--resolve", &resolve, &url];
    args.extend(m.iter().map(String::as_str));
    let (ok, _, _) = curl(&args).await;
    assert!(!ok, "a certificate from another CA must be refused");
    wait_metric(&h, &failures_line("web", "bad_certificate", 1)).await;

    let al = with(&alice);
    let mut args = vec!["--cacert", cacert, "--resolve", &resolve, &url];
    args.extend(al.iter().map(String::as_str));
    let (ok, _, err) = curl(&args).await;
    assert!(ok, "{err}");
    let text = h.gateway.metrics().encode();
    assert!(text.contains(&failures_line("web", "no_certificate", 1)));
    assert!(text.contains(&failures_line("web", "bad_certificate", 1)));
    h.gateway.shutdown().await;
}

#[tokio::test]
async fn plain_http_hang_ups_and_silence_are_counted() {
    let ca = TestCa::new("tls-metrics-raw");
    let a = ca.server_cert("a", &["a.test"]);
    let backend = Backend::start("app").await;
    let tls = format!(
        "{{certificates: [{}], handshakeTimeout: 300ms}}",
        cert_entry(&a)
    );
    let h = start(&https_config(&tls, backend.addr)).await;

    // Plain HTTP to the HTTPS port: not TLS; the gateway hangs up.
    let mut plain = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut buf))
        .await
        .expect("the gateway closes the connection");
    wait_metric(&h, &failures_line("web", "not_tls", 1)).await;

    // Connect and hang up at once (a port scanner, a TCP health check).
    drop(tokio::net::TcpStream::connect(h.addr).await.unwrap());
    wait_metric(&h, &failures_line("web", "closed", 1)).await;

    // Connect and say nothing: disconnected after handshakeTimeout.
    let mut silent = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, silent.read(&mut byte))
        .await
        .expect("the gateway closes the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    wait_metric(&h, &failures_line("web", "timeout", 1)).await;
    h.gateway.shutdown().await;
}

#[tokio::test]
async fn https_redirects_are_logged_and_counted() {
    let h = start(
        "listeners:
  - {name: plain, address: \"127.0.0.1:0\", httpsRedirect: {port: 8443}}
routes:
  - name: r
    filters: [{type: DirectResponse, directResponse: {status: 200}}]
",
    )
    .await;
    let r = h.get("shop.test:8080", "/cart?item=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://shop.test:8443/cart?item=1");
    let id = r.headers["x-request-id"].to_str().unwrap().to_owned();

    let log = h.log_lines(1).await;
    assert_eq!(log.len(), 1, "{log:?}");
    let line = &log[0];
    assert_eq!(line["status"], 301);
    assert_eq!(line["reason"], "https_redirect");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/cart?item=1");
    assert_eq!(line["authority"], "shop.test:8080");
    assert_eq!(line["request_id"], id.as_str());
    assert!(line["route"].is_null(), "{line}");
    assert!(line["service"].is_null(), "{line}");

    // HTTP/1.0 without a Host: 400, logged as bad_request.
    let mut raw = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    raw.write_all(b"GET /x HTTP/1.0\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    raw.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.0 400"), "{reply}");
    let log = h.log_lines(2).await;
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[1]["status"], 400);
    assert_eq!(log[1]["reason"], "bad_request");

    let text = h.gateway.metrics().encode();
    let want = [
        "meshgate_requests_total{route=\"none\",service=\"none\",method=\"GET\",status_class=\"3xx\"} 1",
        "meshgate_requests_total{route=\"none\",service=\"none\",method=\"GET\",status_class=\"4xx\"} 1",
    ];
    for line in want {
        assert!(
            text.contains(line),
            "{line} in\n{}",
            grep(&text, "requests_total")
        );
    }
    assert!(
        text.contains("meshgate_request_duration_seconds_count{route=\"none\"} 2"),
        "{}",
        grep(&text, "request_duration_seconds_count")
    );
    h.gateway.shutdown().await;
}
