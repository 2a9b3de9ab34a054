//! The local `RateLimit` policy through a real gateway: the quota and its 429 with
//! `Retry-After` and `RateLimit-*` headers (on allowed responses too), buckets kept
//! apart per client address (behind a trusted proxy, never believing an untrusted
//! `x-forwarded-for`), per header value, per consumer and per route, and tokens
//! coming back as time passes.

mod common;

use bytes::Bytes;
use http::{Method, StatusCode};
use meshgate_policy::credentials::{generate_api_key, hash_api_key};
use meshgate_testkit::Backend;

/// One listener and a route per `(name, path prefix, policies)`, to service `app`.
fn config(app: &Backend, policies: &str, routes: &[(&str, &str, &str)], extra: &str) -> String {
    let routes: String = routes
        .iter()
        .map(|(name, prefix, policies)| {
            format!(
                "  - {{name: {name}, matches: [{{path: {{value: {prefix}}}}}], policies: [{policies}], backendRefs: [{{name: app}}]}}\n"
            )
        })
        .collect();
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
{extra}
policies:
{policies}
routes:
{routes}services:
{}",
        common::service("app", &[app.addr])
    )
}

async fn get(h: &common::Harness, path: &str, headers: &[(&str, &str)]) -> common::Reply {
    h.send(Method::GET, "h", path, headers, Bytes::new()).await
}

fn header(r: &common::Reply, name: &str) -> Option<String> {
    r.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
}

/// Statuses of `n` requests to `path` with `headers`.
async fn statuses(h: &common::Harness, n: usize, path: &str, headers: &[(&str, &str)]) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(h, path, headers).await.status.as_u16());
    }
    out
}

#[tokio::test]
async fn ten_per_minute_then_429_with_retry_after_and_ratelimit_headers() {
    let app = Backend::start("app").await;
    let h = common::start(&config(
        &app,
        "  - {name: ten, type: RateLimit, rateLimit: {requests: 10, per: 1m, burst: 10}}",
        &[("api", "/", "ten")],
        "admin: {enabled: false, token: t0ken, liveExplain: true}",
    ))
    .await;

    for i in 0..10u32 {
        let explain: &[(&str, &str)] = if i == 0 {
            &[("x-meshgate-explain", "t0ken")]
        } else {
            &[]
        };
        let r = get(&h, "/orders", explain).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
        assert_eq!(header(&r, "ratelimit-limit").as_deref(), Some("10"));
        assert_eq!(
            header(&r, "ratelimit-remaining"),
            Some((9 - i).to_string()),
            "request {i}"
        );
        // The bucket is full again once the spent tokens refilled: 6 s each.
        assert_eq!(
            header(&r, "ratelimit-reset"),
            Some((6 * (i + 1)).to_string()),
            "request {i}"
        );
        assert!(header(&r, "retry-after").is_none());
        if i == 0 {
            let trace = header(&r, "x-meshgate-explain").unwrap();
            assert!(
                trace.contains("ten [RateLimit]: continue")
                    && trace.contains("key 127.0.0.1: 9 of 10 left"),
                "{trace}"
            );
        }
    }

    let r = get(&h, "/orders", &[("x-meshgate-explain", "t0ken")]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["error"], "rate_limited");
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry), "next token within 6 s: {retry}");
    assert_eq!(header(&r, "ratelimit-limit").as_deref(), Some("10"));
    assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("0"));
    let reset: u64 = header(&r, "ratelimit-reset").unwrap().parse().unwrap();
    assert!(
        (55..=60).contains(&reset),
        "full again within a minute: {reset}"
    );
    let trace = header(&r, "x-meshgate-explain").unwrap();
    assert!(
        trace.contains(&format!(
            "ten [RateLimit]: deny 429 rate_limited - key 127.0.0.1: limited, retry in {retry}s"
        )),
        "{trace}"
    );
    assert_eq!(
        app.hits(),
        10,
        "the refused request never reached the upstream"
    );

    let log = h.log_lines(11).await;
    assert_eq!(log[10]["status"], 429);
    assert_eq!(log[10]["reason"], "rate_limited");
    let metrics = h.gateway.metrics().encode();
    for line in [
        "meshgate_ratelimit_decisions_total{policy=\"ten\",decision=\"allowed\"} 10",
        "meshgate_ratelimit_decisions_total{policy=\"ten\",decision=\"limited\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn headers_can_be_turned_off() {
    let app = Backend::start("app").await;
    let h = common::start(&config(
        &app,
        "  - {name: quiet, type: RateLimit, rateLimit: {requests: 1, per: 1m, headers: false}}",
        &[("api", "/", "quiet")],
        "",
    ))
    .await;
    let ok = get(&h, "/", &[]).await;
    let refused = get(&h, "/", &[]).await;
    assert_eq!(
        (ok.status, refused.status),
        (StatusCode::OK, StatusCode::TOO_MANY_REQUESTS)
    );
    for r in [&ok, &refused] {
        for name in [
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
            "retry-after",
        ] {
            assert!(header(r, name).is_none(), "{name} sent with headers: false");
        }
    }
}

#[tokio::test]
async fn client_ip_buckets_behind_a_trusted_proxy_and_untrusted_xff_ignored() {
    let app = Backend::start("app").await;
    let h = common::start(&config(
        &app,
        "  - {name: behind-proxy, type: RateLimit, rateLimit: {requests: 2, per: 1m, trustedProxies: [127.0.0.1]}}
  - {name: direct, type: RateLimit, rateLimit: {requests: 2, per: 1m, trustedProxies: [10.0.0.0/8]}}",
        &[("proxied", "/proxied", "behind-proxy"), ("direct", "/direct", "direct")],
        "",
    ))
    .await;
    let xff = |v| [("x-forwarded-for", v)];

    // 127.0.0.1 is the trusted proxy: each forwarded client has its own bucket.
    assert_eq!(
        statuses(&h, 3, "/proxied", &xff("203.0.113.1")).await,
        [200, 200, 429]
    );
    assert_eq!(
        statuses(&h, 2, "/proxied", &xff("203.0.113.2")).await,
        [200, 200]
    );
    // The rightmost address that is not a trusted proxy is the client.
    assert_eq!(
        statuses(&h, 1, "/proxied", &xff("198.51.100.9, 203.0.113.1")).await,
        [429]
    );
    assert_eq!(
        statuses(&h, 1, "/proxied", &xff("203.0.113.1, 198.51.100.9")).await,
        [200]
    );
    // Malformed lists are not believed: the proxy itself is the client.
    assert_eq!(
        statuses(&h, 2, "/proxied", &xff("203.0.113.3, junk")).await,
        [200, 200]
    );
    assert_eq!(
        statuses(&h, 1, "/proxied", &[]).await,
        [429],
        "127.0.0.1's own bucket"
    );

    // Here 127.0.0.1 is not trusted: x-forwarded-for cannot buy anyone a new bucket.
    assert_eq!(statuses(&h, 1, "/direct", &xff("203.0.113.4")).await, [200]);
    assert_eq!(statuses(&h, 1, "/direct", &xff("203.0.113.5")).await, [200]);
    let r = get(&h, "/direct", &xff("203.0.113.6")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn header_buckets_and_one_shared_bucket_without_the_header() {
    let app = Backend::start("app").await;
    let h = common::start(&config(
        &app,
        "  - {name: tenants, type: RateLimit, rateLimit: {key: header, header: x-tenant, requests: 2, per: 1m}}",
        &[("api", "/", "tenants")],
        "",
    ))
    .await;
    let tenant = |t| [("x-tenant", t)];
    assert_eq!(statuses(&h, 3, "/", &tenant("a")).await, [200, 200, 429]);
    assert_eq!(statuses(&h, 3, "/", &tenant("b")).await, [200, 200, 429]);
    assert_eq!(statuses(&h, 3, "/", &[]).await, [200, 200, 429]);
    assert_eq!(
        statuses(&h, 1, "/", &tenant("-")).await,
        [200],
        "not the shared bucket"
    );
}

#[tokio::test]
async fn consumer_buckets_for_api_key_consumers() {
    let app = Backend::start("app").await;
    let (alice, bob) = (generate_api_key().unwrap(), generate_api_key().unwrap());
    let policies = format!(
        "  - {{name: keys, type: ApiKey, apiKey: {{}}}}
  - {{name: per-consumer, type: RateLimit, rateLimit: {{key: consumer, requests: 2, per: 1m}}}}
consumers:
  - {{name: alice, apiKeys: [\"{}\"]}}
  - {{name: bob, apiKeys: [\"{}\"]}}",
        hash_api_key(&alice),
        hash_api_key(&bob)
    );
    let h = common::start(&config(
        &app,
        &policies,
        &[("api", "/", "keys, per-consumer")],
        "",
    ))
    .await;
    assert_eq!(
        statuses(&h, 3, "/", &[("x-api-key", alice.as_str())]).await,
        [200, 200, 429]
    );
    assert_eq!(
        statuses(&h, 3, "/", &[("x-api-key", bob.as_str())]).await,
        [200, 200, 429]
    );
    let log = h.log_lines(6).await;
    assert_eq!(log[2]["consumer"], "alice");
    assert_eq!(log[2]["reason"], "rate_limited");
}

#[tokio::test]
async fn route_buckets() {
    let app = Backend::start("app").await;
    let h = common::start(&config(
        &app,
        "  - {name: per-route, type: RateLimit, rateLimit: {key: route, requests: 2, per: 1m}}",
        &[
            ("orders", "/orders", "per-route"),
            ("users", "/users", "per-route"),
        ],
        "",
    ))
    .await;
    assert_eq!(statuses(&h, 3, "/orders", &[]).await, [200, 200, 429]);
    // Another client address changes nothing: the route is the key.
    assert_eq!(
        statuses(&h, 1, "/orders", &[("x-forwarded-for", "203.0.113.1")]).await,
        [429]
    );
    assert_eq!(statuses(&h, 3, "/users", &[]).await, [200, 200, 429]);
}

#[tokio::test]
async fn tokens_come_back_as_time_passes() {
    let app = Backend::start("app").await;
    let h = common::start(&config(
        &app,
        "  - {name: fast, type: RateLimit, rateLimit: {requests: 2, per: 1s}}",
        &[("api", "/", "fast")],
        "",
    ))
    .await;
    assert_eq!(statuses(&h, 2, "/", &[]).await, [200, 200]);
    let r = get(&h, "/", &[]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("1"));
    // Waiting as long as Retry-After says is enough (the passing of time is what
    // is tested here).
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(get(&h, "/", &[]).await.status, StatusCode::OK);
    // A full second refills the whole bucket of 2.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(statuses(&h, 3, "/", &[]).await, [200, 200, 429]);
}
