//! TLS origination and HTTP/2 to upstreams, against real rustls backends: verified
//! against the CA, refused on a wrong CA or name, mTLS, h2c and h2 over TLS (ALPN)
//! behind HTTP/1.1 and HTTP/2 clients, pooling, `maxConnections`, and files
//! checked when a config is applied.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshgate_testkit::Backend;
use meshgate_testkit::certs::{Issued, TestCa, provider};

/// One route to service `svc` at `addr` with the given extra service lines.
fn config(addr: &str, service_extra: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - name: r
    backendRefs: [{{name: svc}}]
services:
  - name: svc
    endpoints: [\"{addr}\"]
{service_extra}"
    )
}

fn tls_lines(ca: &TestCa, more: &str) -> String {
    format!(
        "    tls: {{caFile: \"{}\"{more}}}\n",
        ca.ca_path().display()
    )
}

/// A TLS backend for `backend.test` and 127.0.0.1 offering `alpn`.
async fn tls_backend(ca: &TestCa, alpn: &[&str]) -> (Backend, Issued) {
    let cert = ca.server_cert("backend", &["backend.test", "127.0.0.1"]);
    let backend = Backend::start_tls("tls", cert.server_config(alpn)).await;
    (backend, cert)
}

#[tokio::test]
async fn tls_upstream_verified_against_its_ca() {
    let ca = TestCa::new("verify");
    let (backend, _) = tls_backend(&ca, &["http/1.1"]).await;
    // Named: SNI sent and verified.
    let h = common::start(&config(
        &backend.addr.to_string(),
        &tls_lines(&ca, ", serverName: backend.test"),
    ))
    .await;
    let r = h.get("example.com", "/hello").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let echo = r.json();
    assert_eq!(echo["tls"]["sni"], "backend.test");
    assert_eq!(echo["tls"]["alpn"], "http/1.1");
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["headers"]["host"], "example.com");
    // Pooled: the next request reuses the TLS connection.
    let again = h.get("example.com", "/hello").await.json();
    assert_eq!(again["peer"], echo["peer"]);

    // Default name: the endpoint's host, here an IP (checked against the IP SAN, no SNI).
    let h = common::start(&config(&backend.addr.to_string(), &tls_lines(&ca, ""))).await;
    let r = h.get("example.com", "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["tls"]["sni"], serde_json::Value::Null);
}

#[tokio::test]
async fn wrong_ca_or_name_is_refused_and_logged() {
    let ca = TestCa::new("right");
    let other = TestCa::new("other");
    let (backend, _) = tls_backend(&ca, &["http/1.1"]).await;
    for tls in [
        tls_lines(&other, ", serverName: backend.test"),
        tls_lines(&ca, ", serverName: elsewhere.test"),
    ] {
        let h = common::start(&config(&backend.addr.to_string(), &tls)).await;
        let r = h.get("example.com", "/").await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{tls}: {}",
            r.body
        );
        assert_eq!(r.json()["error"], "upstream_connect_failure");
        let log = h.log_lines(1).await;
        assert_eq!(log[0]["reason"], "upstream_connect_failure");
        assert_eq!(log[0]["upstream"], backend.addr.to_string());
    }
    assert_eq!(
        backend.hits(),
        0,
        "no request may reach an unverified upstream"
    );
    common::wait_for(
        "the backend to see both failed handshakes",
        Duration::from_secs(5),
        || backend.tls_failures() >= 2,
    )
    .await;
}

#[tokio::test]
async fn insecure_skip_verify_accepts_an_unknown_ca() {
    let ca = TestCa::new("unknown");
    let (backend, _) = tls_backend(&ca, &["http/1.1"]).await;
    let h = common::start(&config(
        &backend.addr.to_string(),
        "    tls: {insecureSkipVerify: true, serverName: backend.test}\n",
    ))
    .await;
    let r = h.get("example.com", "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["tls"]["sni"], "backend.test");
}

#[tokio::test]
async fn mtls_upstream_needs_the_client_certificate() {
    let ca = TestCa::new("mtls");
    let cert = ca.server_cert("backend", &["backend.test"]);
    let gateway_cert = ca.client_cert("gateway", "meshgate", &[]);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca_der()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.cert_der()], cert.key_der())
        .unwrap();
    let backend = Backend::start_tls("mtls", Arc::new(server)).await;
    let addr = backend.addr.to_string();

    let h = common::start(&config(
        &addr,
        &tls_lines(&ca, ", serverName: backend.test"),
    ))
    .await;
    let r = h.get("example.com", "/").await;
    // TLS 1.3 finishes the client side before the server checks the client: the
    // refusal arrives as a connect failure or as a reset of the first request.
    let reason = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        matches!(
            (r.status.as_u16(), reason.as_str()),
            (502, "upstream_reset") | (503, "upstream_connect_failure")
        ),
        "{}: {}",
        r.status,
        r.body
    );
    // The backend counts the failed handshake once its side of it has ended.
    common::wait_for(
        "the backend to refuse the handshake",
        Duration::from_secs(5),
        || backend.tls_failures() >= 1,
    )
    .await;
    assert_eq!(backend.hits(), 0);

    let with_cert = format!(
        ", serverName: backend.test, clientCertFile: \"{}\", clientKeyFile: \"{}\"",
        gateway_cert.cert.display(),
        gateway_cert.key.display()
    );
    let h = common::start(&config(&addr, &tls_lines(&ca, &with_cert))).await;
    let r = h.get("example.com", "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["tls"]["clientCert"], true);
}

#[tokio::test]
async fn http2_upstream_with_prior_knowledge() {
    let backend = Backend::start("h2c").await;
    let addr = backend.addr.to_string();
    let h = common::start(&config(
        &addr,
        "    protocol: HTTP2\n    http2: {initialStreamWindowSize: 131072, keepAliveInterval: 30s}\n",
    ))
    .await;
    // An HTTP/1.1 client; the backend sees HTTP/2 with the client's Host as
    // `:authority` (preserveHost) and no Host header.
    let r = h.get("example.com", "/h2?x=1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let echo = r.json();
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echo["authority"], "example.com");
    assert!(echo["headers"].get("host").is_none(), "{echo}");
    assert_eq!(echo["query"], "x=1");
    assert!(echo["headers"].get("connection").is_none());
    // Every request, also concurrent ones, shares the one multiplexed connection.
    let replies = futures_join(&h, 8).await;
    for reply in replies {
        assert_eq!(reply["peer"], echo["peer"]);
        assert_eq!(reply["version"], "HTTP/2.0");
    }
    // Other hosts get their own `:authority` (on their own connection).
    let other = h.get("other.example", "/").await.json();
    assert_eq!(other["authority"], "other.example");
    // curl as an HTTP/1.1 client.
    let out = h.curl(&["--http1.1", &h.url("/curl")]).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"version\":\"HTTP/2.0\""), "{out}");
}

async fn futures_join(h: &common::Harness, n: usize) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let calls: Vec<_> = (0..n)
        .map(|i| h.get("example.com", if i % 2 == 0 { "/a" } else { "/b" }))
        .collect();
    for reply in futures_util::future::join_all(calls).await {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        out.push(reply.json());
    }
    out
}

#[tokio::test]
async fn http2_upstream_over_tls_with_alpn() {
    let ca = TestCa::new("alpn");
    let (backend, _) = tls_backend(&ca, &["h2", "http/1.1"]).await;
    let addr = backend.addr.to_string();
    let h = common::start(&config(
        &addr,
        &format!(
            "    protocol: HTTP2\n{}",
            tls_lines(&ca, ", serverName: backend.test")
        ),
    ))
    .await;
    let r = h.get("example.com", "/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let echo = r.json();
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echo["tls"]["alpn"], "h2");

    // The same backend as an HTTP1 service negotiates http/1.1.
    let h = common::start(&config(
        &addr,
        &tls_lines(&ca, ", serverName: backend.test"),
    ))
    .await;
    let echo = h.get("example.com", "/").await.json();
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["tls"]["alpn"], "http/1.1");
}

/// An h2 (prior knowledge) client through the gateway.
async fn h2_get(h: &common::Harness, path: &str) -> (StatusCode, serde_json::Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    // `:authority` is the gateway's address; no Host header (HTTP/2 style).
    let req = Request::get(format!("http://{}{path}", h.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("gateway answers h2");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn http2_client_to_http1_and_http2_services() {
    let backend = Backend::start("h1").await;
    let h = common::start(&config(&backend.addr.to_string(), "")).await;
    let (status, echo) = h2_get(&h, "/from-h2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["path"], "/from-h2");
    assert_eq!(
        echo["headers"]["host"],
        h.addr.to_string(),
        "Host from :authority"
    );

    let ca = TestCa::new("h2h2");
    let (tls, _) = tls_backend(&ca, &["h2"]).await;
    let h = common::start(&config(
        &tls.addr.to_string(),
        &format!(
            "    protocol: HTTP2\n{}",
            tls_lines(&ca, ", serverName: backend.test")
        ),
    ))
    .await;
    let (status, echo) = h2_get(&h, "/h2-both-ways").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echo["tls"]["alpn"], "h2");
    assert_eq!(echo["authority"], h.addr.to_string());

    // preserveHost: false sends the endpoint's own authority.
    let h = common::start(&config(
        &tls.addr.to_string(),
        &format!(
            "    protocol: HTTP2\n    preserveHost: false\n{}",
            tls_lines(&ca, ", serverName: backend.test")
        ),
    ))
    .await;
    let (_, echo) = h2_get(&h, "/").await;
    assert_eq!(echo["authority"], tls.addr.to_string());
}

#[tokio::test]
async fn max_connections_counts_tls_connections() {
    let ca = TestCa::new("limit");
    let (backend, _) = tls_backend(&ca, &["http/1.1"]).await;
    let h = common::start(&config(
        &backend.addr.to_string(),
        &format!(
            "    circuitBreaker: {{maxConnections: 1}}\n{}",
            tls_lines(&ca, ", serverName: backend.test")
        ),
    ))
    .await;
    // The slow request holds the only connection; the second needs another one.
    let slow = h.get("example.com", "/sleep/500");
    let fast = async {
        common::wait_for(
            "the slow request to reach the backend",
            Duration::from_secs(5),
            || backend.hits() == 1,
        )
        .await;
        h.get("example.com", "/").await
    };
    let (slow, fast) = tokio::join!(slow, fast);
    assert_eq!(slow.status, StatusCode::OK, "{}", slow.body);
    assert_eq!(
        fast.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        fast.body
    );
    assert_eq!(fast.json()["error"], "overflow");
    // Once idle, the pooled TLS connection serves again.
    assert_eq!(h.get("example.com", "/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_files_refuse_the_config_and_the_old_one_stays() {
    let ca = TestCa::new("files");
    let (backend, _) = tls_backend(&ca, &["http/1.1"]).await;
    let addr = backend.addr.to_string();
    let h = common::start(&config(
        &addr,
        &tls_lines(&ca, ", serverName: backend.test"),
    ))
    .await;
    assert_eq!(h.get("example.com", "/").await.status, StatusCode::OK);

    let missing = ca.dir().join("nope.pem");
    let not_pem = ca.dir().join("garbage.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    for (file, expect) in [
        (&missing, "No such file"),
        (&not_pem, "no certificate found"),
    ] {
        let yaml = config(
            &addr,
            &format!("    tls: {{caFile: \"{}\"}}\n", file.display()),
        );
        let next = meshgate_config::parse_str(&yaml, "next.yaml").unwrap();
        let err = h
            .gateway
            .apply(next)
            .await
            .expect_err("a bad caFile is refused")
            .to_string();
        assert!(err.contains("\"svc\""), "names the service: {err}");
        assert!(
            err.contains(&file.display().to_string()),
            "names the file: {err}"
        );
        assert!(err.contains("tls.caFile"), "names the setting: {err}");
        assert!(err.contains(expect), "{err}");
    }
    let key_file = ca.dir().join("missing.key");
    let yaml = config(
        &addr,
        &tls_lines(
            &ca,
            &format!(
                ", clientCertFile: \"{}\", clientKeyFile: \"{}\"",
                ca.ca_path().display(),
                key_file.display()
            ),
        ),
    );
    let err = h
        .gateway
        .apply(meshgate_config::parse_str(&yaml, "next.yaml").unwrap())
        .await
        .expect_err("a missing key is refused")
        .to_string();
    assert!(
        err.contains("tls.clientKeyFile") && err.contains("missing.key"),
        "{err}"
    );
    // The old config still serves.
    assert_eq!(h.get("example.com", "/").await.status, StatusCode::OK);
}
