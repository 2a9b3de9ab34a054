//! The `ClientCert` policy through a real gateway: HTTPS listeners verifying client
//! certificates made here by a test CA (optional and required), real curl with
//! `--cert/--key` over HTTP/1.1 and HTTP/2. The consumer reaches the upstream (forged
//! identity headers never do), an `Authorize` after it admits one group and refuses
//! another, a certificate outside `allow` is 403, no certificate is 401 (also on a
//! plain HTTP listener), and the access log names the consumer and the subject.

mod common;

use std::net::SocketAddr;

use meshgate_testkit::Backend;
use meshgate_testkit::certs::{Issued, TestCa};
use serde_json::Value;

/// An HTTPS listener `web` verifying client certificates against `ca` in `mode`,
/// a plain HTTP listener `plain`, and the route `api` on both behind `policies`.
fn config(ca: &TestCa, server: &Issued, mode: &str, policies: &str, backend: SocketAddr) -> String {
    format!(
        "listeners:
  - name: web
    address: 127.0.0.1:0
    protocol: HTTPS
    tls:
      certificates: [{{certFile: \"{}\", keyFile: \"{}\"}}]
      clientAuth: {{caFile: \"{}\", mode: {mode}}}
  - {{name: plain, address: \"127.0.0.1:0\"}}
{policies}
routes:
  - {{name: api, policies: [mtls, admins], backendRefs: [{{name: svc}}]}}
services:
  - {{name: svc, endpoints: [\"{backend}\"]}}
",
        server.cert.display(),
        server.key.display(),
        ca.ca_path().display(),
    )
}

/// Runs curl against `https://api.test:<port>/orders` (or `url`); returns the
/// status and the JSON body.
async fn curl(
    h: &common::Harness,
    ca: &TestCa,
    cert: Option<&Issued>,
    extra: &[&str],
) -> (u16, Value) {
    let port = h.addr.port();
    let resolve = format!("api.test:{port}:127.0.0.1");
    let url = format!("https://api.test:{port}/orders");
    let mut args: Vec<String> = [
        "-sS",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code}",
        "--cacert",
        ca.ca_path().to_str().unwrap(),
        "--resolve",
        &resolve,
        &url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(c) = cert {
        args.extend([
            "--cert".into(),
            c.cert.display().to_string(),
            "--key".into(),
            c.key.display().to_string(),
        ]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = tokio::process::Command::new("curl")
        .args(&args)
        .output()
        .await
        .expect("curl runs (apt-get install curl)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, code) = stdout.rsplit_once('\n').expect("status line from -w");
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (code.parse().expect("status code"), json)
}

#[tokio::test]
async fn client_certificates_authenticate_and_authorize_consumers() {
    let ca = TestCa::new("policy-mtls");
    let server = ca.server_cert("api", &["api.test"]);
    let alice = ca.client_cert("alice", "alice", &["spiffe://example.org/alice"]);
    let bob = ca.client_cert("bob", "bob", &["spiffe://example.org/bob"]);
    let carol = ca.client_cert("carol", "carol", &["spiffe://elsewhere.org/carol"]);
    let backend = Backend::start("svc").await;
    let policies = "consumers:
  - {name: alice, groups: [admins]}
  - {name: bob, groups: [readers]}
policies:
  - name: mtls
    type: ClientCert
    clientCert: {allow: [{uriPrefix: \"spiffe://example.org/\"}]}
  - {name: admins, type: Authorize, authorize: {rules: [{groups: [admins]}]}}";
    let h = common::start(&config(&ca, &server, "Optional", policies, backend.addr)).await;

    // alice, over HTTP/2 and HTTP/1.1, with forged identity headers that must not pass.
    for version in ["--http2", "--http1.1"] {
        let (status, echo) = curl(
            &h,
            &ca,
            Some(&alice),
            &[
                version,
                "-H",
                "x-consumer: admin",
                "-H",
                "x-consumer-groups: root",
                "-H",
                "x-client-cert-subject: CN=root",
            ],
        )
        .await;
        assert_eq!(status, 200, "{echo}");
        let seen = &echo["headers"];
        assert_eq!(seen["x-consumer"], "alice", "{echo}");
        assert_eq!(seen["x-consumer-groups"], "admins");
        assert_eq!(seen["x-client-cert-subject"], "CN=alice");
    }
    assert_eq!(backend.hits(), 2);

    // bob is authenticated, but Authorize lets only admins through.
    let (status, body) = curl(&h, &ca, Some(&bob), &["-H", "x-consumer: alice"]).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    // carol's certificate is valid, but outside `allow`.
    let (status, body) = curl(&h, &ca, Some(&carol), &[]).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    // No certificate (the listener makes it optional): 401.
    let (status, body) = curl(&h, &ca, None, &["-H", "x-consumer: alice"]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing_credentials"))
    );
    // The plain HTTP listener can carry no certificate at all: 401 as well.
    let plain = h.gateway.local_addr("plain").expect("plain listener bound");
    let r = h
        .send_to(
            plain,
            http::Method::GET,
            "api.test",
            "/orders",
            &[("x-consumer", "alice")],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["error"].clone()),
        (401, "missing_credentials".into())
    );
    assert_eq!(backend.hits(), 2, "no refused request reached the upstream");

    let lines = h.log_lines(6).await;
    assert_eq!(lines.len(), 6, "{lines:?}");
    let seen: Vec<(u64, &Value, &Value)> = lines
        .iter()
        .map(|l| {
            (
                l["status"].as_u64().unwrap(),
                &l["consumer"],
                &l["client_cert"],
            )
        })
        .collect();
    let [alice_s, bob_s, carol_s, alice_c, bob_c] =
        ["CN=alice", "CN=bob", "CN=carol", "alice", "bob"].map(Value::from);
    assert_eq!(
        seen,
        [
            (200, &alice_c, &alice_s),
            (200, &alice_c, &alice_s),
            (403, &bob_c, &bob_s),
            (403, &Value::Null, &carol_s),
            (401, &Value::Null, &Value::Null),
            (401, &Value::Null, &Value::Null),
        ]
    );
    h.gateway.shutdown().await;
}

#[tokio::test]
async fn spiffe_ids_name_consumers_on_a_listener_requiring_certificates() {
    let ca = TestCa::new("policy-mtls-spiffe");
    let server = ca.server_cert("api", &["api.test"]);
    let orders = "spiffe://example.org/ns/shop/sa/orders";
    let billing = "spiffe://example.org/ns/shop/sa/billing";
    let orders_cert = ca.client_cert("orders", "orders-7f9c", &[orders]);
    let billing_cert = ca.client_cert("billing", "billing-1a2b", &[billing]);
    let backend = Backend::start("svc").await;
    let policies = format!(
        "consumers:
  - {{name: \"{orders}\", groups: [writers]}}
policies:
  - name: mtls
    type: ClientCert
    clientCert: {{consumerFrom: uri, requireConsumer: true, groups: [mesh]}}
  - {{name: admins, type: Authorize, authorize: {{rules: [{{groups: [writers]}}]}}}}"
    );
    let h = common::start(&config(&ca, &server, "Require", &policies, backend.addr)).await;

    let (status, echo) = curl(&h, &ca, Some(&orders_cert), &[]).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["headers"]["x-consumer"], orders);
    assert_eq!(echo["headers"]["x-consumer-groups"], "writers,mesh");
    assert_eq!(echo["headers"]["x-client-cert-subject"], "CN=orders-7f9c");
    // billing's certificate verifies, but its SPIFFE ID is no consumer.
    let (status, body) = curl(&h, &ca, Some(&billing_cert), &[]).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    assert_eq!(backend.hits(), 1);

    let lines = h.log_lines(2).await;
    assert_eq!(lines[0]["consumer"], orders, "{}", lines[0]);
    assert_eq!(lines[1]["client_cert"], "CN=billing-1a2b", "{}", lines[1]);
    h.gateway.shutdown().await;
}
