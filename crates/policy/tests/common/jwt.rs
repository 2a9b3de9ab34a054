//! What the Jwt integration tests share: a gateway config with one `jwt` policy,
//! claims, an explained request and assertions on refusals.

use bytes::Bytes;
use http::{Method, StatusCode};
use meshgate_testkit::jwt::now;
use serde_json::{Value, json};

use super::{Harness, Reply};

pub const ADMIN: &str = "explain-token";

/// A gateway config with policy `jwt` (settings in YAML flow style) on route `api`,
/// and `extra_routes` (full route entries) after it.
pub fn config(svc: &str, settings: &str, extra: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
admin: {{enabled: false, token: {ADMIN}, liveExplain: true}}
policies:
  - {{name: jwt, type: Jwt, jwt: {settings}}}
{extra}routes:
  - {{name: api, policies: [jwt], backendRefs: [{{name: svc}}]}}
services:
{svc}"
    )
}

pub fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 600, "iss": "https://idp.test", "aud": "orders"})
}

/// A request with `Authorization: Bearer <token>` (if any), explained.
pub async fn call(h: &Harness, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("x-meshgate-explain", ADMIN)];
    if let Some(b) = &bearer {
        headers.push(("authorization", b));
    }
    headers.extend_from_slice(extra);
    h.send(Method::GET, "api.test", path, &headers, Bytes::new())
        .await
}

pub fn trace(r: &Reply) -> String {
    r.headers
        .get("x-meshgate-explain")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Asserts a 401 `invalid_credentials` whose explanation and challenge say `why`.
pub fn assert_refused(r: &Reply, why: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_credentials");
    let t = trace(r);
    assert!(
        t.contains(&format!("[Jwt]: deny 401 invalid_credentials - {why}")),
        "want {why:?} in {t}"
    );
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{challenge}"
    );
}

pub fn rfc3339(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date runs");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
