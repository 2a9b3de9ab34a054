//! `meshgate explain` and `meshgate validate` warnings as a user sees them: the
//! route that matched and why earlier candidates did not, each policy's verdict
//! with its reason, and where the request goes — for an allowed and a refused
//! request, compared with golden files (`tests/snapshots`, reviewed by hand).

mod common;

use std::process::Command;

use common::{BIN, TempDir};
use meshgate_policy::credentials::hash_api_key;

/// A fixed key, so the golden output is stable (its hash is computed, never pasted).
const KEY: &str = "mgk_golden-file-test-key-not-a-secret";
/// HS256 secret of the `bearer` policy; tokens are signed in the test.
const JWT_SECRET: &str = "golden-file-test-secret-0123456789abcdef";

fn config() -> String {
    config_with("[office, keys, limits]", "")
}

/// The config with the `orders` route's policy list and extra policy entries.
fn config_with(route_policies: &str, extra_policies: &str) -> String {
    format!(
        r#"admin: {{enabled: false}}
listeners:
  - {{name: public, address: "127.0.0.1:8080"}}
consumers:
  - {{name: acme, groups: [partners], apiKeys: ["{}"]}}
policies:
  - {{name: office, type: IpAccess, ipAccess: {{allow: [127.0.0.0/8]}}}}
  - {{name: keys, type: ApiKey, apiKey: {{}}}}
  - {{name: limits, type: RequestLimits, requestLimits: {{maxUriBytes: 64}}}}
  - name: bearer
    type: Jwt
    jwt: {{algorithms: [HS256], issuer: https://idp.example, audiences: [orders], keys: [{{secret: "{JWT_SECRET}"}}]}}
{extra_policies}routes:
  - name: orders-admin
    hostnames: [api.example.com]
    matches: [{{path: {{type: Exact, value: /orders/admin}}}}]
    backendRefs: [{{name: orders}}]
  - name: orders-write
    hostnames: [api.example.com]
    matches: [{{path: {{value: /orders}}, method: POST}}]
    backendRefs: [{{name: orders}}]
  - name: reports
    hostnames: [api.example.com]
    matches: [{{path: {{value: /reports}}}}]
    policies: [bearer]
    backendRefs: [{{name: orders}}]
  - name: orders
    hostnames: [api.example.com]
    matches: [{{path: {{value: /orders}}}}]
    policies: {route_policies}
    backendRefs: [{{name: orders}}]
services:
  - {{name: orders, endpoints: ["127.0.0.1:9001", "127.0.0.1:9002"]}}
"#,
        hash_api_key(KEY)
    )
}

fn explain(args: &[&str]) -> (bool, String) {
    let dir = TempDir::new("explain");
    let file = dir.write("meshgate.yaml", &config());
    let out = Command::new(BIN)
        .arg("explain")
        .arg("-c")
        .arg(&file)
        .args(args)
        .output()
        .expect("run meshgate explain");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "explain wrote to stderr: {stderr}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn explain_an_allowed_request() {
    let key = format!("x-api-key: {KEY}");
    let (ok, text) = explain(&["GET http://api.example.com:8080/orders/7", "-H", &key]);
    assert!(ok);
    insta::assert_snapshot!("allowed", text);
}

#[test]
fn explain_a_refused_request() {
    let (ok, text) = explain(&[
        "GET http://api.example.com:8080/orders/7",
        "-H",
        "x-api-key: mgk_not-a-known-key",
    ]);
    assert!(ok, "explaining a refusal is a successful explain");
    insta::assert_snapshot!("refused_bad_key", text);
    let (_, text) = explain(&[
        "http://api.example.com:8080/orders/7",
        "--client",
        "192.0.2.7:5000",
    ]);
    insta::assert_snapshot!("refused_ip", text);
}

/// A token for the `bearer` policy with a fixed `exp`, so the output is stable.
fn token(exp: u64) -> String {
    use meshgate_testkit::jwt::{Algorithm, TestKey};
    let key = TestKey::hmac(Algorithm::HS256, "golden", JWT_SECRET.as_bytes());
    key.sign(&serde_json::json!({
        "sub": "alice", "iss": "https://idp.example", "aud": "orders", "exp": exp,
    }))
}

#[test]
fn explain_jwt_expired_and_valid() {
    // 2026-11-20T10:00:00Z: in the past for anyone running this test.
    let expired = format!("authorization: Bearer {}", token(1_795_168_800));
    let (ok, text) = explain(&["GET http://api.example.com:8080/reports/q3", "-H", &expired]);
    assert!(ok);
    insta::assert_snapshot!("jwt_expired", text);
    // 2100-01-01: valid.
    let valid = format!("authorization: Bearer {}", token(4_102_444_800));
    let (_, text) = explain(&["GET http://api.example.com:8080/reports/q3", "-H", &valid]);
    insta::assert_snapshot!("jwt_valid", text);
}

#[test]
fn explain_reports_bad_requests_clearly() {
    let dir = TempDir::new("explain-bad");
    let file = dir.write("meshgate.yaml", &config());
    let out = Command::new(BIN)
        .args(["explain", "-c"])
        .arg(&file)
        .arg("GET /orders")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "\"/orders\": give an absolute URL (http://host/path) so the host is known\n"
    );
}

#[test]
fn validate_warns_about_suspicious_policy_order() {
    let dir = TempDir::new("order");
    let yaml = config_with(
        "[per-consumer, office, keys, cors, limits]",
        "  - {name: per-consumer, type: RateLimit, rateLimit: {key: consumer, requests: 5, per: 1s}}
  - {name: cors, type: Cors, cors: {allowOrigins: [\"https://app.example.com\"]}}
  - {name: unused, type: IpAccess, ipAccess: {deny: [10.0.0.0/8]}}
",
    );
    let file = dir.write("meshgate.yaml", &yaml);
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&*file.to_string_lossy(), "FILE");
    insta::assert_snapshot!("order_warnings", stderr);
}
