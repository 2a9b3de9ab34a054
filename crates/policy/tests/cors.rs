//! The `Cors` policy through a real gateway, with real curl and the hyper client:
//! preflights answered at the gateway (exact, wildcard and regex origins, with
//! credentials), refused with 403 for other origins, methods and headers; actual
//! requests get the CORS headers, also on a 401 from a later `ApiKey`; other
//! origins get none (the browser withholds the response), and explain says so.

mod common;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use meshgate_policy::credentials::{generate_api_key, hash_api_key};
use meshgate_testkit::Backend;

fn config(svc: &str, key: &str) -> String {
    format!(
        r#"listeners: [{{name: l, address: "127.0.0.1:0"}}]
admin: {{token: sesame, liveExplain: true}}
consumers: [{{name: acme, apiKeys: ["{}"]}}]
policies:
  - name: cors
    type: Cors
    cors:
      allowOrigins: ["https://app.example.com", "https://*.example.org"]
      allowOriginRegex: ['https://pr-[0-9]+\.preview\.example\.net']
      allowMethods: [GET, PUT, DELETE]
      allowHeaders: [authorization, content-type, x-api-key]
      exposeHeaders: [x-request-id, ratelimit-remaining]
      allowCredentials: true
      maxAge: 10m
  - {{name: keys, type: ApiKey, apiKey: {{}}}}
  - {{name: open, type: Cors, cors: {{allowOrigins: ["*"], allowHeaders: ["*"]}}}}
routes:
  - {{name: api, matches: [{{path: {{value: /api}}}}], policies: [cors, keys], backendRefs: [{{name: svc}}]}}
  - {{name: public, matches: [{{path: {{value: /public}}}}], policies: [open], backendRefs: [{{name: svc}}]}}
services:
{svc}"#,
        hash_api_key(key)
    )
}

/// Header value as text ("" when absent); several values joined with ", ".
fn get(h: &HeaderMap, name: &str) -> String {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn send(
    h: &common::Harness,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> common::Reply {
    h.send(method, "h", path, headers, Bytes::new()).await
}

async fn preflight(
    h: &common::Harness,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> common::Reply {
    let mut hs = vec![
        ("origin", origin),
        ("access-control-request-method", method),
    ];
    if let Some(list) = headers {
        hs.push(("access-control-request-headers", list));
    }
    send(h, Method::OPTIONS, "/api/orders", &hs).await
}

const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

#[tokio::test]
async fn preflights_are_answered_at_the_gateway() {
    let b = Backend::start("svc").await;
    let key = generate_api_key().unwrap();
    let h = common::start(&config(&common::service("svc", &[b.addr]), &key)).await;

    // Real curl, exact origin: 204 with everything a browser checks.
    let out = h
        .curl(&[
            "-X",
            "OPTIONS",
            "-H",
            "Origin: https://app.example.com",
            "-H",
            "Access-Control-Request-Method: PUT",
            "-H",
            "Access-Control-Request-Headers: content-type, x-api-key",
            &h.url("/api/orders/7"),
        ])
        .await
        .to_ascii_lowercase();
    assert!(out.starts_with("http/1.1 204"), "{out}");
    for line in [
        "access-control-allow-origin: https://app.example.com\r\n",
        "access-control-allow-credentials: true\r\n",
        "access-control-allow-methods: get, put, delete\r\n",
        "access-control-allow-headers: authorization, content-type, x-api-key\r\n",
        "access-control-max-age: 600\r\n",
        "vary: origin, access-control-request-method, access-control-request-headers\r\n",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }

    // Wildcard (any depth) and regex origins are echoed, never `*` with credentials.
    for origin in [
        "https://a.example.org",
        "https://a.b.example.org",
        "https://pr-12.preview.example.net",
    ] {
        let r = preflight(&h, origin, "DELETE", None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{origin}");
        assert_eq!(get(&r.headers, "access-control-allow-origin"), origin);
        assert_eq!(get(&r.headers, "vary"), PREFLIGHT_VARY);
    }
    // POST is CORS-safelisted: browsers allow it whatever the answer lists.
    let r = preflight(&h, "https://app.example.com", "POST", Some("content-type")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    // Refusals: origin (exact, bare wildcard domain, look-alike, regex), method, header.
    for (origin, method, headers) in [
        ("https://evil.example.com", "GET", None),
        ("https://example.org", "GET", None),
        ("https://evil-example.org", "GET", None),
        ("https://app.example.com.evil.net", "GET", None),
        ("https://pr-x.preview.example.net", "GET", None),
        ("http://app.example.com", "GET", None),
        ("https://app.example.com", "PATCH", None),
        (
            "https://app.example.com",
            "PUT",
            Some("content-type, x-evil"),
        ),
    ] {
        let r = preflight(&h, origin, method, headers).await;
        assert_eq!(
            (r.status, r.json()["error"].as_str().unwrap()),
            (StatusCode::FORBIDDEN, "cors_origin_denied"),
            "{origin} {method} {headers:?}"
        );
        assert_eq!(get(&r.headers, "access-control-allow-origin"), "");
    }
    // Refused preflight via curl too.
    let out = h
        .curl(&[
            "-X",
            "OPTIONS",
            "-H",
            "Origin: https://evil.example.com",
            "-H",
            "Access-Control-Request-Method: PUT",
            &h.url("/api/orders"),
        ])
        .await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.contains("\"error\":\"cors_origin_denied\""), "{out}");

    // `*` without credentials: ACAO `*`, requested headers echoed, default methods.
    let r = send(
        &h,
        Method::OPTIONS,
        "/public/x",
        &[
            ("origin", "https://anyone.test"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-anything"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&r.headers, "access-control-allow-origin"), "*");
    assert_eq!(
        get(&r.headers, "access-control-allow-methods"),
        "GET, HEAD, POST"
    );
    assert_eq!(
        get(&r.headers, "access-control-allow-headers"),
        "x-anything"
    );
    assert_eq!(get(&r.headers, "access-control-allow-credentials"), "");

    assert_eq!(b.hits(), 0, "preflights never reach the upstream");
    let log = h.log_lines(15).await;
    assert_eq!(log.len(), 15);
    assert_eq!(log[0]["status"], 204);
    assert_eq!(log[5]["status"], 403);
    assert_eq!(log[5]["reason"], "cors_origin_denied");
}

#[tokio::test]
async fn actual_requests_get_cors_headers_even_on_errors() {
    let b = Backend::start("svc").await;
    let key = generate_api_key().unwrap();
    let h = common::start(&config(&common::service("svc", &[b.addr]), &key)).await;
    let app = "https://app.example.com";

    let r = send(
        &h,
        Method::GET,
        "/api/orders",
        &[("origin", app), ("x-api-key", &key)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(get(&r.headers, "access-control-allow-origin"), app);
    assert_eq!(get(&r.headers, "access-control-allow-credentials"), "true");
    assert_eq!(
        get(&r.headers, "access-control-expose-headers"),
        "x-request-id, ratelimit-remaining"
    );
    assert!(get(&r.headers, "vary").contains("Origin"));
    assert_eq!(
        r.json()["headers"]["origin"],
        app,
        "the request itself goes upstream untouched"
    );

    // A 401 from the ApiKey policy after CORS still carries the CORS headers, so
    // the page's script can read the error.
    let r = send(&h, Method::GET, "/api/orders", &[("origin", app)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&r.headers, "access-control-allow-origin"), app);
    assert_eq!(get(&r.headers, "access-control-allow-credentials"), "true");
    // Same through real curl.
    let out = h
        .curl(&["-H", "Origin: https://x.example.org", &h.url("/api/orders")])
        .await
        .to_ascii_lowercase();
    assert!(out.starts_with("http/1.1 401"), "{out}");
    assert!(
        out.contains("access-control-allow-origin: https://x.example.org\r\n"),
        "{out}"
    );

    // Another origin: served (CORS is enforced by the browser), without CORS
    // headers, and explain says why.
    let r = send(
        &h,
        Method::GET,
        "/api/orders",
        &[
            ("origin", "https://evil.example.com"),
            ("x-api-key", &key),
            ("x-meshgate-explain", "sesame"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(get(&r.headers, "access-control-allow-origin"), "");
    assert_eq!(get(&r.headers, "vary"), "Origin");
    let trace = get(&r.headers, "x-meshgate-explain");
    assert!(
        trace.contains(
            "cors [Cors]: continue - origin https://evil.example.com is not allowed: \
             no CORS headers (the browser will withhold the response)"
        ),
        "{trace}"
    );

    // No Origin: not a CORS request; only `Vary: Origin`, for caches.
    let r = send(&h, Method::GET, "/api/orders", &[("x-api-key", &key)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(get(&r.headers, "access-control-allow-origin"), "");
    assert_eq!(get(&r.headers, "vary"), "Origin");

    // `*` without credentials: ACAO `*`, no Vary needed.
    let r = send(
        &h,
        Method::GET,
        "/public/x",
        &[("origin", "https://anyone.test")],
    )
    .await;
    assert_eq!(get(&r.headers, "access-control-allow-origin"), "*");
    assert_eq!(get(&r.headers, "vary"), "");
    assert_eq!(b.hits(), 4);
}
