//! TLS termination on `HTTPS` listeners, with real TLS on both sides: certificates
//! from a test CA (rcgen), curl (OpenSSL) and a rustls client. SNI choice (exact,
//! wildcard, default, strict), ALPN h2 / http/1.1, minimum version, `httpsRedirect`,
//! and the handshake timeout. Client certificates and certificate files over time:
//! `tls_mtls.rs`.

mod common;
mod tls_support;

use std::time::Duration;

use common::start;
use meshgate_testkit::Backend;
use meshgate_testkit::certs::TestCa;
use tls_support::*;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn sni_picks_the_certificate_and_alpn_picks_the_protocol() {
    let ca = TestCa::new("sni");
    let a = ca.server_cert("a", &["a.test"]);
    let b = ca.server_cert("b", &["b.test", "*.b.test"]);
    let backend = Backend::start("app").await;
    let tls = format!("{{certificates: [{}, {}]}}", cert_entry(&a), cert_entry(&b));
    let h = start(&https_config(&tls, backend.addr)).await;
    let cacert = ca.ca_path();
    let cacert = cacert.to_str().unwrap();

    for (host, subject) in [("a.test", "CN=a.test"), ("b.test", "CN=b.test")] {
        let (resolve, url) = resolve_url(&h, host, "/hello");
        let (ok, out, err) = curl(&[
            "-v",
            "--http2",
            "--cacert",
            cacert,
            "--resolve",
            &resolve,
            &url,
        ])
        .await;
        assert!(ok, "curl {host}: {err}");
        assert!(
            err.contains(&format!("subject: {subject}")),
            "{host}: wrong certificate:\n{err}"
        );
        assert!(err.contains("< HTTP/2 200"), "{host}: not HTTP/2:\n{err}");
        let echo: serde_json::Value = serde_json::from_str(&out).expect("echo JSON");
        assert_eq!(echo["headers"]["x-forwarded-proto"], "https", "{echo}");
    }

    // HTTP/1.1 by ALPN on the same listener.
    let (resolve, url) = resolve_url(&h, "a.test", "/");
    let (ok, _, err) = curl(&[
        "-v",
        "--http1.1",
        "--cacert",
        cacert,
        "--resolve",
        &resolve,
        &url,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(err.contains("ALPN: server accepted http/1.1"), "{err}");
    assert!(err.contains("< HTTP/1.1 200"), "{err}");

    // The exact certificates, seen by a rustls client: exact, wildcard, default.
    let client = ca.client_config(None);
    for (sni, want) in [("a.test", &a), ("b.test", &b), ("x.b.test", &b)] {
        let seen = handshake(h.addr, sni, client.clone())
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert!(seen.leaf == want.cert_der, "{sni}: wrong certificate");
        assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
    }

    // A name no certificate covers gets the first certificate (curl -k: it cannot
    // verify it, which is the client's call).
    let (resolve, url) = resolve_url(&h, "unknown.test", "/");
    let (ok, _, err) = curl(&["-v", "-k", "--resolve", &resolve, &url]).await;
    assert!(ok, "{err}");
    assert!(err.contains("subject: CN=a.test"), "{err}");
    h.gateway.shutdown().await;
}

#[tokio::test]
async fn sni_strict_refuses_names_it_has_no_certificate_for() {
    let ca = TestCa::new("strict");
    let a = ca.server_cert("a", &["a.test"]);
    let backend = Backend::start("app").await;
    let tls = format!("{{certificates: [{}], sniStrict: true}}", cert_entry(&a));
    let h = start(&https_config(&tls, backend.addr)).await;
    let cacert = ca.ca_path();
    let cacert = cacert.to_str().unwrap();

    let (resolve, url) = resolve_url(&h, "a.test", "/");
    let (ok, _, err) = curl(&["--http2", "--cacert", cacert, "--resolve", &resolve, &url]).await;
    assert!(ok, "{err}");

    let (resolve, url) = resolve_url(&h, "other.test", "/");
    let (ok, _, err) = curl(&["--cacert", cacert, "--resolve", &resolve, &url]).await;
    assert!(!ok, "a handshake for other.test must be refused");
    assert!(err.contains("alert") || err.contains("SSL"), "{err}");
    let refused = handshake(h.addr, "other.test", ca.client_config(None)).await;
    assert!(refused.is_err(), "rustls client got through");
    h.gateway.shutdown().await;
}

#[tokio::test]
async fn alpn_and_minimum_version_are_configurable() {
    let ca = TestCa::new("alpn");
    let a = ca.server_cert("a", &["a.test"]);
    let backend = Backend::start("app").await;
    let tls = format!(
        "{{certificates: [{}], alpn: [http/1.1], minVersion: TLS1_3}}",
        cert_entry(&a)
    );
    let h = start(&https_config(&tls, backend.addr)).await;
    let cacert = ca.ca_path();
    let cacert = cacert.to_str().unwrap();
    let (resolve, url) = resolve_url(&h, "a.test", "/");

    let (ok, _, err) = curl(&[
        "-v",
        "--http2",
        "--cacert",
        cacert,
        "--resolve",
        &resolve,
        &url,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(
        err.contains("< HTTP/1.1 200"),
        "h2 was not offered, so HTTP/1.1:\n{err}"
    );
    assert!(err.contains("TLSv1.3"), "{err}");

    let (ok, _, err) = curl(&[
        "--tls-max",
        "1.2",
        "--cacert",
        cacert,
        "--resolve",
        &resolve,
        &url,
    ])
    .await;
    assert!(!ok, "TLS 1.2 must be refused with minVersion TLS1_3: {err}");
    h.gateway.shutdown().await;
}

#[tokio::test]
async fn https_redirect_answers_301_with_the_https_location() {
    let h = start(
        "listeners:
  - {name: plain, address: \"127.0.0.1:0\", httpsRedirect: {port: 8443}}
  - {name: default-port, address: \"127.0.0.1:0\", httpsRedirect: {}}
routes:
  - name: r
    filters: [{type: DirectResponse, directResponse: {status: 200}}]
",
    )
    .await;
    let r = h.get("shop.test:8080", "/cart?item=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://shop.test:8443/cart?item=1");

    let other = h.gateway.local_addr("default-port").unwrap();
    let url = format!("http://{other}/a/b");
    let out = h.curl(&["-H", "Host: shop.test", &url]).await;
    assert!(out.starts_with("HTTP/1.1 301"), "{out}");
    assert!(out.contains("location: https://shop.test/a/b\r\n"), "{out}");
    h.gateway.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_disconnected() {
    let ca = TestCa::new("hs-timeout");
    let a = ca.server_cert("a", &["a.test"]);
    let backend = Backend::start("app").await;
    let tls = format!(
        "{{certificates: [{}], handshakeTimeout: 200ms}}",
        cert_entry(&a)
    );
    let h = start(&https_config(&tls, backend.addr)).await;
    let mut silent = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("the gateway closes the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let metrics = h.gateway.metrics().clone();
    common::wait_for("no active connections", Duration::from_secs(5), || {
        metrics
            .encode()
            .contains("meshgate_active_connections{listener=\"web\"} 0")
    })
    .await;
    h.gateway.shutdown().await;
}
