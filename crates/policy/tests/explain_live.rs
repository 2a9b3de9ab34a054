//! Live `explain` and custom error bodies through a real gateway: a request that
//! carries the admin token in `x-meshgate-explain` gets its policy trace in the
//! response (and the token never reaches the upstream); a wrong token gets nothing.
//! Gateway-generated errors use the route's `errorResponses`, else the global ones.

mod common;

use bytes::Bytes;
use http::{Method, StatusCode};
use meshgate_policy::credentials::{generate_api_key, hash_api_key};
use meshgate_testkit::Backend;

fn config(svc: &str, key: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
admin: {{enabled: false, token: s3cret-admin, liveExplain: true}}
consumers:
  - {{name: acme, groups: [partners], apiKeys: [\"{}\"]}}
policies:
  - {{name: keys, type: ApiKey, apiKey: {{}}}}
  - {{name: small, type: RequestLimits, requestLimits: {{maxUriBytes: 40}}}}
errorResponses:
  - statuses: [404, 414]
    contentType: text/plain
    body: 'global {{{{status}}}} {{{{reason}}}}'
routes:
  - name: orders
    matches: [{{path: {{value: /orders}}}}]
    policies: [small, keys]
    errorResponses:
      - statuses: [401]
        contentType: application/problem+json
        body: '{{\"type\":\"about:blank\",\"title\":\"{{{{message}}}}\",\"status\":{{{{status}}}},\"requestId\":\"{{{{requestId}}}}\",\"route\":\"{{{{route}}}}\"}}'
    backendRefs: [{{name: app}}]
  - name: admin-only
    matches: [{{path: {{type: Exact, value: /orders/admin}}, method: DELETE}}]
    backendRefs: [{{name: app}}]
services:
{svc}",
        hash_api_key(key)
    )
}

#[tokio::test]
async fn explain_header_with_the_admin_token_returns_the_trace() {
    let app = Backend::start("app").await;
    let key = generate_api_key().unwrap();
    let h = common::start(&config(&common::service("app", &[app.addr]), &key)).await;

    let r = h
        .send(
            Method::GET,
            "api.test",
            "/orders/7",
            &[("x-api-key", &key), ("x-meshgate-explain", "s3cret-admin")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let trace = r.headers["x-meshgate-explain"].to_str().unwrap();
    assert!(
        trace.starts_with(
        "route admin-only: skipped (* Exact /orders/admin): path /orders/7 does not match Exact /orders/admin; \
         route orders: matched (* PathPrefix /orders); \
         small [RequestLimits]: continue - within limits; \
         keys [ApiKey]: continue - consumer acme; \
         consumer: acme; ",
        ),
        "{trace}"
    );
    assert!(
        trace.ends_with(&format!("=> forwarded to service app ({}): 200", app.addr)),
        "{trace}"
    );
    let upstream_headers = &r.json()["headers"];
    assert!(
        upstream_headers.get("x-meshgate-explain").is_none(),
        "the admin token must not reach the upstream: {upstream_headers}"
    );

    // A wrong token: no trace, and the header is still not forwarded.
    let r = h
        .send(
            Method::GET,
            "api.test",
            "/orders/7",
            &[("x-api-key", &key), ("x-meshgate-explain", "guess")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("x-meshgate-explain").is_none());
    assert!(r.json()["headers"].get("x-meshgate-explain").is_none());

    // A refused request explains the refusal.
    let r = h
        .send(
            Method::GET,
            "api.test",
            "/orders/7",
            &[
                ("x-api-key", "mgk_wrong"),
                ("x-meshgate-explain", "s3cret-admin"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let trace = r.headers["x-meshgate-explain"].to_str().unwrap();
    assert!(
        trace.ends_with(
            "keys [ApiKey]: deny 401 invalid_credentials - the key matches no consumer; \
             => refused: 401 invalid_credentials"
        ),
        "{trace}"
    );
}

#[tokio::test]
async fn error_bodies_follow_route_then_global_templates() {
    let app = Backend::start("app").await;
    let key = generate_api_key().unwrap();
    let h = common::start(&config(&common::service("app", &[app.addr]), &key)).await;

    // The route's problem+json template, with the request id the client sent.
    let r = h
        .send(
            Method::GET,
            "api.test",
            "/orders",
            &[("x-request-id", "req-\"42\"")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let doc = r.json();
    assert_eq!(
        doc["requestId"], "req-\"42\"",
        "escaped as JSON: {}",
        r.body
    );
    assert_eq!(doc["status"], 401);
    assert_eq!(doc["route"], "orders");
    assert_eq!(doc["title"], "the request carries no credentials");

    // 414 on the same route: not in the route's list, so the global one answers.
    let long = format!("/orders/{}", "x".repeat(64));
    let r = h.get("api.test", &long).await;
    assert_eq!(r.status, StatusCode::URI_TOO_LONG);
    assert_eq!(r.headers["content-type"], "text/plain");
    assert_eq!(r.body, "global 414 uri_too_long");

    // No route at all: the global template.
    let r = h.get("api.test", "/nowhere").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, "global 404 no_route");

    // A status no template covers keeps the built-in JSON body.
    let dead = common::dead_addr();
    drop(h);
    let h = common::start(&config(&common::service("app", &[dead]), &key)).await;
    let r = h
        .send(
            Method::GET,
            "api.test",
            "/orders",
            &[("x-api-key", &key)],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "upstream_connect_failure");
    let log = h.log_lines(1).await;
    assert_eq!(log[0]["reason"], "upstream_connect_failure");
}
