//! HTTPS listeners with client certificates (mTLS at the edge: required and
//! optional, the subject in the access log) and certificate files over time:
//! replaced on disk and picked up without restart, broken ones refused while the
//! old config keeps serving.

mod common;
mod tls_support;

use std::time::{Duration, Instant};

use common::start;
use meshgate_testkit::Backend;
use meshgate_testkit::certs::TestCa;
use tls_support::*;

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
