//! Routing through a real gateway to real backends: hostnames, path kinds, method,
//! headers, query parameters, Gateway API precedence, listeners, and no-route 404s.

mod common;

use http::{Method, StatusCode};
use meshgate_testkit::Backend;

async fn backends(names: &[&str]) -> Vec<Backend> {
    let mut v = Vec::new();
    for n in names {
        v.push(Backend::start(n).await);
    }
    v
}

fn services(bs: &[Backend]) -> String {
    bs.iter()
        .map(|b| common::service(&b.name, &[b.addr]))
        .collect()
}

#[tokio::test]
async fn hostnames_exact_then_longest_wildcard_then_any() {
    let bs = backends(&["exact", "wild", "deep-wild", "any"]).await;
    let yaml = format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - {{name: any, backendRefs: [{{name: any}}]}}
  - {{name: wild, hostnames: [\"*.example.com\"], backendRefs: [{{name: wild}}]}}
  - {{name: deep, hostnames: [\"*.b.example.com\"], backendRefs: [{{name: deep-wild}}]}}
  - {{name: exact, hostnames: [a.example.com], backendRefs: [{{name: exact}}]}}
services:
{}",
        services(&bs)
    );
    let h = common::start(&yaml).await;
    for (host, want) in [
        ("a.example.com", "exact"),
        ("A.Example.COM:8080", "exact"),
        ("c.example.com", "wild"),
        ("x.y.example.com", "wild"),
        ("x.b.example.com", "deep-wild"),
        ("example.com", "any"),
        ("other.org", "any"),
    ] {
        assert_eq!(h.get(host, "/").await.backend(), want, "host {host}");
    }
}

#[tokio::test]
async fn path_kinds_and_precedence() {
    let bs = backends(&["exact", "api", "api-v2", "regex", "root"]).await;
    let yaml = format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - {{name: root, matches: [{{path: {{type: PathPrefix, value: /}}}}], backendRefs: [{{name: root}}]}}
  - {{name: regex, matches: [{{path: {{type: RegularExpression, value: \"/items/[0-9]+\"}}}}], backendRefs: [{{name: regex}}]}}
  - {{name: api, matches: [{{path: {{type: PathPrefix, value: /api}}}}], backendRefs: [{{name: api}}]}}
  - {{name: api-v2, matches: [{{path: {{type: PathPrefix, value: /api/v2/}}}}], backendRefs: [{{name: api-v2}}]}}
  - {{name: exact, matches: [{{path: {{type: Exact, value: /api/v2/status}}}}], backendRefs: [{{name: exact}}]}}
services:
{}",
        services(&bs)
    );
    let h = common::start(&yaml).await;
    for (path, want) in [
        ("/api/v2/status", "exact"),
        ("/api/v2/status/x", "api-v2"),
        ("/api/v2", "api-v2"),
        ("/api/v2/", "api-v2"),
        ("/api/v1/x", "api"),
        ("/api", "api"),
        ("/apix", "root"),
        ("/items/42", "regex"),
        ("/items/42x", "root"),
        ("/", "root"),
        ("/api?x=1", "api"),
    ] {
        assert_eq!(h.get("h", path).await.backend(), want, "path {path}");
    }
}

#[tokio::test]
async fn method_headers_and_query_conditions() {
    let bs = backends(&[
        "post",
        "two-headers",
        "one-header",
        "query",
        "regex-header",
        "plain",
    ])
    .await;
    let yaml = format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - {{name: plain, backendRefs: [{{name: plain}}]}}
  - {{name: post, matches: [{{method: POST}}], backendRefs: [{{name: post}}]}}
  - name: one
    matches: [{{headers: [{{name: X-Env, value: canary}}]}}]
    backendRefs: [{{name: one-header}}]
  - name: two
    matches: [{{headers: [{{name: x-env, value: canary}}, {{name: x-user, value: alice}}]}}]
    backendRefs: [{{name: two-headers}}]
  - name: rx
    matches: [{{headers: [{{name: x-version, type: RegularExpression, value: \"v[0-9]+\"}}]}}]
    backendRefs: [{{name: regex-header}}]
  - name: q
    matches: [{{queryParams: [{{name: debug, value: \"1\"}}]}}]
    backendRefs: [{{name: query}}]
services:
{}",
        services(&bs)
    );
    let h = common::start(&yaml).await;
    let send = |m: Method, path: &'static str, hs: Vec<(&'static str, &'static str)>| {
        let h = &h;
        async move {
            h.send(m, "h", path, &hs, bytes::Bytes::new())
                .await
                .backend()
        }
    };
    assert_eq!(send(Method::GET, "/", vec![]).await, "plain");
    assert_eq!(send(Method::POST, "/", vec![]).await, "post");
    assert_eq!(
        send(Method::GET, "/", vec![("x-env", "canary")]).await,
        "one-header"
    );
    assert_eq!(
        send(
            Method::GET,
            "/",
            vec![("x-env", "canary"), ("x-user", "alice")]
        )
        .await,
        "two-headers"
    );
    assert_eq!(
        send(Method::GET, "/", vec![("x-env", "prod")]).await,
        "plain"
    );
    assert_eq!(
        send(Method::GET, "/", vec![("x-version", "v12")]).await,
        "regex-header"
    );
    assert_eq!(
        send(Method::GET, "/", vec![("x-version", "v12-beta")]).await,
        "plain",
        "regex must match whole value"
    );
    assert_eq!(send(Method::GET, "/?a=2&debug=1", vec![]).await, "query");
    assert_eq!(send(Method::GET, "/?debug=0", vec![]).await, "plain");
    // Method match outranks header matches (Gateway API order).
    assert_eq!(
        send(Method::POST, "/", vec![("x-env", "canary")]).await,
        "post"
    );
}

#[tokio::test]
async fn routes_bind_to_named_listeners_and_unmatched_requests_get_json_404() {
    let bs = backends(&["internal", "public"]).await;
    let yaml = format!(
        "listeners:
  - {{name: public, address: \"127.0.0.1:0\"}}
  - {{name: internal, address: \"127.0.0.1:0\"}}
routes:
  - {{name: pub, listeners: [public], matches: [{{path: {{value: /pub}}}}], backendRefs: [{{name: public}}]}}
  - {{name: int, listeners: [internal], matches: [{{path: {{value: /int}}}}], backendRefs: [{{name: internal}}]}}
services:
{}",
        services(&bs)
    );
    let h = common::start(&yaml).await;
    let internal = h.gateway.local_addr("internal").unwrap();
    assert_eq!(h.get("h", "/pub").await.backend(), "public");
    let miss = h.get("h", "/int").await;
    assert_eq!(miss.status, StatusCode::NOT_FOUND);
    assert_eq!(miss.headers["content-type"], "application/json");
    let body = miss.json();
    assert_eq!(body["error"], "no_route");
    assert_eq!(
        body["requestId"].as_str().unwrap(),
        miss.headers["x-request-id"].to_str().unwrap()
    );
    let on_internal = h
        .send_to(internal, Method::GET, "h", "/int", &[], bytes::Bytes::new())
        .await;
    assert_eq!(on_internal.backend(), "internal");
    let log = h.log_lines(3).await;
    let miss_line = log.iter().find(|l| l["status"] == 404).expect("404 logged");
    assert_eq!(miss_line["reason"], "no_route");
}

#[tokio::test]
async fn curl_http1_and_h2c_prior_knowledge_route_the_same() {
    let bs = backends(&["api"]).await;
    let yaml = format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - {{name: api, hostnames: [api.example.com], backendRefs: [{{name: api}}]}}
services:
{}",
        services(&bs)
    );
    let h = common::start(&yaml).await;
    for flag in ["--http1.1", "--http2-prior-knowledge"] {
        let out = h
            .curl(&[flag, "-H", "host: api.example.com", &h.url("/hello")])
            .await;
        let first = out.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("HTTP/1.1 200") || first.starts_with("HTTP/2 200"),
            "{flag}: {first}"
        );
        assert!(out.contains("\"backend\":\"api\""), "{flag}: {out}");
        assert!(out.to_ascii_lowercase().contains("x-request-id:"), "{flag}");
    }
    // Over h2 the authority comes from :authority; the backend still sees a Host.
    let out = h
        .curl(&[
            "--http2-prior-knowledge",
            &format!("http://api.example.com:{}/x", h.addr.port()),
            "--connect-to",
            &format!(
                "api.example.com:{}:127.0.0.1:{}",
                h.addr.port(),
                h.addr.port()
            ),
        ])
        .await;
    assert!(out.contains("\"host\":\"api.example.com:"), "{out}");
    assert!(out.contains("\"via\":\"2 meshgate\""), "{out}");
}
