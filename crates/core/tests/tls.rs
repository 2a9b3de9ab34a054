//! TLS termination on `HTTPS` listeners, with real TLS on both sides: certificates
//! from a test CA (rcgen), curl (OpenSSL) and a rustls client. SNI choice (exact,
//! wildcard, default, strict), ALPN h2 / http/1.1, minimum version, mTLS at the edge
//! with the subject in the access log, certificate files replaced on disk, bad files
//! refused by `apply` with the old config serving on, and `httpsRedirect`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Harness, start};
use meshgate_testkit::Backend;
use meshgate_testkit::certs::{Issued, TestCa};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTPS listener with `tls` (YAML flow mapping) and one route to `backend`.
fn https_config(tls: &str, backend: SocketAddr) -> String {
    format!(
        "listeners: [{{name: web, address: \"127.0.0.1:0\", protocol: HTTPS, tls: {tls}}}]
routes:
  - name: r
    backendRefs: [{{name: svc}}]
services:
  - {{name: svc, endpoints: [\"{backend}\"]}}
"
    )
}

fn cert_entry(c: &Issued) -> String {
    format!(
        "{{certFile: \"{}\", keyFile: \"{}\"}}",
        c.cert.display(),
        c.key.display()
    )
}

/// What a rustls client saw in the handshake.
struct Seen {
    leaf: Vec<u8>,
    alpn: Option<Vec<u8>>,
}

/// Handshakes with `addr` sending SNI `sni`, and completes one HTTP/1.1 request so
/// errors the server raises after the client's last flight (TLS 1.3 client auth)
/// surface too.
async fn handshake(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Seen, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    let seen = Seen {
        leaf: session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default(),
        alpn: session.alpn_protocol().map(<[u8]>::to_vec),
    };
    tls.write_all(format!("GET / HTTP/1.1\r\nhost: {sni}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    if !reply.starts_with(b"HTTP/1.1 ") {
        return Err(format!(
            "no HTTP reply: {}",
            String::from_utf8_lossy(&reply)
        ));
    }
    Ok(seen)
}

/// Runs curl; returns (success, stdout, stderr).
async fn curl(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .await
        .expect("curl runs (apt-get install curl)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--resolve host:port:127.0.0.1` and the URL `https://host:port/path`.
fn resolve_url(h: &Harness, host: &str, path: &str) -> (String, String) {
    let port = h.addr.port();
    (
        format!("{host}:{port}:127.0.0.1"),
        format!("https://{host}:{port}{path}"),
    )
}

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
async fn mtls_requires_a_client_certificate_and_logs_its_subject() {
    let ca = TestCa::new("mtls");
    let a = ca.server_cert("a", &["a.test"]);
    let alice = ca.client_cert(
        "alice",
        "alice",
        &["spiffe://example.org/ns/default/sa/alice"],
    );
    let stranger_ca = TestCa::new("mtls-stranger");
    let mallory = stranger_ca.client_cert("mallory", "mallory", &[]);
    let backend = Backend::start("app").await;
    let tls = format!(
        "{{certificates: [{}], clientAuth: {{caFile: \"{}\"}}}}",
        cert_entry(&a),
        ca.ca_path().display()
    );
    let h = start(&https_config(&tls, backend.addr)).await;
    let cacert = ca.ca_path();
    let cacert = cacert.to_str().unwrap();
    let (resolve, url) = resolve_url(&h, "a.test", "/who");

    let (ok, _, err) = curl(&["--cacert", cacert, "--resolve", &resolve, &url]).await;
    assert!(!ok, "no client certificate must be refused: {err}");
    let (ok, _, _) = curl(&[
        "--cacert",
        cacert,
        "--resolve",
        &resolve,
        &url,
        "--cert",
        mallory.cert.to_str().unwrap(),
        "--key",
        mallory.key.to_str().unwrap(),
    ])
    .await;
    assert!(!ok, "a certificate from another CA must be refused");
    assert!(
        handshake(h.addr, "a.test", ca.client_config(None))
            .await
            .is_err()
    );

    let (ok, out, err) = curl(&[
        "-i",
        "--http2",
        "--cacert",
        cacert,
        "--resolve",
        &resolve,
        &url,
        "--cert",
        alice.cert.to_str().unwrap(),
        "--key",
        alice.key.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    handshake(h.addr, "a.test", ca.client_config(Some(&alice)))
        .await
        .expect("rustls client with alice's certificate");

    let lines = h.log_lines(2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        assert_eq!(line["client_cert"], "CN=alice", "{line}");
    }
    h.gateway.shutdown().await;
}

#[tokio::test]
async fn optional_client_auth_lets_clients_without_a_certificate_in() {
    let ca = TestCa::new("mtls-opt");
    let a = ca.server_cert("a", &["a.test"]);
    let bob = ca.client_cert("bob", "bob", &[]);
    let backend = Backend::start("app").await;
    let tls = format!(
        "{{certificates: [{}], clientAuth: {{caFile: \"{}\", mode: Optional}}}}",
        cert_entry(&a),
        ca.ca_path().display()
    );
    let h = start(&https_config(&tls, backend.addr)).await;
    handshake(h.addr, "a.test", ca.client_config(None))
        .await
        .expect("no certificate is fine");
    handshake(h.addr, "a.test", ca.client_config(Some(&bob)))
        .await
        .expect("bob's certificate");
    let lines = h.log_lines(2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0]["client_cert"].is_null(), "{}", lines[0]);
    assert_eq!(lines[1]["client_cert"], "CN=bob");
    h.gateway.shutdown().await;
}

/// Handshakes until the server presents `want` (bounded wait).
async fn wait_for_cert(addr: SocketAddr, ca: &TestCa, want: &Issued) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(seen) = handshake(addr, "a.test", ca.client_config(None)).await
            && seen.leaf == want.cert_der
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn certificate_files_replaced_on_disk_are_picked_up_without_restart() {
    let ca = TestCa::new("rotate");
    let first = ca.server_cert("a", &["a.test"]);
    let backend = Backend::start("app").await;
    let tls = format!("{{certificates: [{}]}}", cert_entry(&first));
    let h = start(&https_config(&tls, backend.addr)).await;
    wait_for_cert(h.addr, &ca, &first).await;

    // Same paths, new certificate and key (written by rename, as tools do).
    let second = ca.server_cert("a", &["a.test"]);
    assert_eq!(second.cert, first.cert);
    wait_for_cert(h.addr, &ca, &second).await;

    // A broken replacement: the watcher refuses it and the last good one stays.
    let tls_state = h
        .gateway
        .snapshot()
        .listener_tls
        .get("web")
        .cloned()
        .unwrap();
    let failures = tls_state.reload_failures();
    std::fs::write(&second.cert, "not a certificate").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while tls_state.reload_failures() == failures {
        assert!(
            Instant::now() < deadline,
            "the broken file was never looked at"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = handshake(h.addr, "a.test", ca.client_config(None))
        .await
        .expect("still serving");
    assert!(
        seen.leaf == second.cert_der,
        "the broken file replaced the certificate"
    );

    // Fixed again: picked up.
    let third = ca.server_cert("a", &["a.test"]);
    wait_for_cert(h.addr, &ca, &third).await;
    h.gateway.shutdown().await;
}

#[tokio::test]
async fn bad_certificate_files_refuse_the_config_and_the_old_one_keeps_serving() {
    let ca = TestCa::new("badfile");
    let a = ca.server_cert("a", &["a.test"]);
    let b = ca.server_cert("b", &["b.test"]);
    let backend = Backend::start("app").await;
    let good = https_config(
        &format!("{{certificates: [{}]}}", cert_entry(&a)),
        backend.addr,
    );
    let h = start(&good).await;
    let client = ca.client_config(None);

    let missing = ca.dir().join("missing.crt");
    let cases = [
        (
            format!(
                "{{certificates: [{{certFile: \"{}\", keyFile: \"{}\"}}]}}",
                missing.display(),
                a.key.display()
            ),
            format!("listeners \"web\": tls: cannot read {}", missing.display()),
        ),
        (
            format!(
                "{{certificates: [{{certFile: \"{}\", keyFile: \"{}\"}}]}}",
                a.cert.display(),
                b.key.display()
            ),
            format!(
                "private key {} does not match certificate {}",
                b.key.display(),
                a.cert.display()
            ),
        ),
        (
            format!(
                "{{certificates: [{{certFile: \"{}\", keyFile: \"{}\"}}]}}",
                a.key.display(),
                a.key.display()
            ),
            format!("{} is not a PEM certificate file", a.key.display()),
        ),
        (
            format!(
                "{{certificates: [{}], clientAuth: {{caFile: \"{}\"}}}}",
                cert_entry(&a),
                missing.display()
            ),
            format!("cannot read {}", missing.display()),
        ),
    ];
    for (tls, want) in cases {
        let config = meshgate_config::parse_str(&https_config(&tls, backend.addr), "t.yaml")
            .expect("valid config");
        let err = h.gateway.apply(config).await.expect_err("must be refused");
        assert!(err.to_string().contains(&want), "got: {err}\nwant: {want}");
        let seen = handshake(h.addr, "a.test", client.clone())
            .await
            .expect("old config still serving");
        assert!(seen.leaf == a.cert_der);
    }

    // httpsRedirect belongs on HTTP listeners only.
    let yaml = good.replace("protocol: HTTPS,", "protocol: HTTPS, httpsRedirect: {},");
    let config = meshgate_config::parse_str(&yaml, "t.yaml").expect("valid config");
    let err = h.gateway.apply(config).await.expect_err("must be refused");
    assert!(
        err.to_string()
            .contains("listeners \"web\": httpsRedirect is only for HTTP listeners"),
        "{err}"
    );

    // A good change of certificates applies to the running listener (same port).
    let config = meshgate_config::parse_str(
        &https_config(
            &format!("{{certificates: [{}]}}", cert_entry(&b)),
            backend.addr,
        ),
        "t.yaml",
    )
    .unwrap();
    h.gateway.apply(config).await.expect("applies");
    let seen = handshake(h.addr, "b.test", client.clone())
        .await
        .expect("new certificate");
    assert!(seen.leaf == b.cert_der);
    h.gateway.shutdown().await;

    // And a gateway does not start on a missing file either.
    let config = meshgate_config::parse_str(
        &https_config(
            &format!(
                "{{certificates: [{{certFile: \"{}\", keyFile: k}}]}}",
                missing.display()
            ),
            backend.addr,
        ),
        "t.yaml",
    )
    .unwrap();
    let log = meshgate_core::access_log::AccessLog::off();
    let err = meshgate_core::Gateway::start_with_log(config, log)
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
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
