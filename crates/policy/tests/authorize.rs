//! The `Authorize` policy. Claims at unit level (consumers with claims built here,
//! the filter run through a real `FilterChain` so `explain` notes are recorded),
//! consumers and groups through a real gateway behind `ApiKey` with keys generated
//! here; default deny, and the explain trace saying which rule matched or why none.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use meshgate_core::filter::{Consumer, FilterChain, Flow, RequestCx};
use meshgate_policy::authorize::Authorize;
use meshgate_policy::credentials::{generate_api_key, hash_api_key};
use meshgate_testkit::Backend;
use serde_json::{Value, json};

/// An `Authorize` filter from the YAML of its settings.
fn authorize(settings: &str) -> Authorize {
    let yaml = format!("policies: [{{name: a, type: Authorize, authorize: {settings}}}]");
    let c = meshgate_config::parse_str(&yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    Authorize::compile(c.policies[0].authorize.as_ref().unwrap()).unwrap()
}

/// Runs `f` for `method path` as `consumer`: allowed?, and the explain note.
async fn check(
    f: &Arc<Authorize>,
    method: &str,
    path: &str,
    consumer: Option<Consumer>,
) -> (bool, String) {
    let mut chain = FilterChain::default();
    chain.push_request(f.clone());
    let (mut req, ()) = http::Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .unwrap()
        .into_parts();
    let mut cx = RequestCx::new("t", "http", "h", 80, std::net::Ipv4Addr::LOCALHOST.into());
    cx.consumer = consumer.map(Arc::new);
    cx.explain = Some(Box::default());
    let allowed = match chain.on_request(&mut req, &mut cx).await {
        Flow::Continue => true,
        Flow::Reject(e) => {
            assert_eq!((e.status().as_u16(), e.reason()), (403, "forbidden"));
            false
        }
        other => panic!("{other:?}"),
    };
    let step = &cx.explain.unwrap().steps[0];
    (allowed, step.detail.clone().unwrap_or_default())
}

fn with_claims(claims: Value) -> Option<Consumer> {
    Some(Consumer {
        name: "alice".into(),
        groups: vec![],
        claims: Some(claims),
    })
}

#[tokio::test]
async fn claim_conditions() {
    let f = Arc::new(authorize(
        r#"{rules: [
            {claims: [{claim: scope, contains: "orders:write"}]},
            {claims: [{claim: realm_access.roles, contains: admin}]},
            {claims: [{claimPath: ["https://example.com/claims", "roles"], anyOf: [editor, owner]}]},
            {claims: [{claim: tenant, equals: 42}, {claim: email_verified, equals: true}]},
            {claims: [{claim: groups.0, equals: founders}]},
            {methods: [GET], claims: [{claim: sub, present: true}, {claim: suspended, present: false}]}
        ]}"#,
    ));
    let cases = [
        (
            json!({"scope": "orders:read orders:write"}),
            "POST",
            true,
            "rule 0 allows consumer alice",
        ),
        (
            json!({"realm_access": {"roles": ["user", "admin"]}}),
            "POST",
            true,
            "rule 1 allows consumer alice",
        ),
        (
            json!({"https://example.com/claims": {"roles": ["owner"]}}),
            "POST",
            true,
            "rule 2 allows consumer alice",
        ),
        (
            json!({"tenant": 42, "email_verified": true}),
            "POST",
            true,
            "rule 3 allows consumer alice",
        ),
        (
            json!({"tenant": 42.0, "email_verified": true}),
            "POST",
            true,
            "rule 3 allows consumer alice",
        ),
        (
            json!({"groups": ["founders", "staff"]}),
            "POST",
            true,
            "rule 4 allows consumer alice",
        ),
        (
            json!({"sub": "alice"}),
            "GET",
            true,
            "rule 5 allows consumer alice",
        ),
        // Near misses: a token prefix, a string where a number is expected, a key
        // with dots taken as a path, null as absent, a forbidden claim present.
        (
            json!({"scope": "orders:writer orders:read", "tenant": "42", "email_verified": true,
                   "realm_access": {"roles": "admin-ish"}, "groups": ["staff", "founders"],
                   "https://example.com/claims.roles": ["owner"], "sub": null}),
            "GET",
            false,
            "no rule allows: rule 0: claim scope does not contain \"orders:write\"; \
             rule 1: claim realm_access.roles does not contain \"admin\"; \
             rule 2: claim https://example.com/claims.roles is none of [\"editor\", \"owner\"]; \
             rule 3: claim tenant does not equal 42; \
             rule 4: claim groups.0 does not equal \"founders\"; \
             rule 5: claim sub is absent",
        ),
        (
            json!({"sub": "alice", "suspended": false, "email_verified": "true", "tenant": 42}),
            "POST",
            false,
            "no rule allows: rule 0: claim scope does not contain \"orders:write\"; \
             rule 1: claim realm_access.roles does not contain \"admin\"; \
             rule 2: claim https://example.com/claims.roles is none of [\"editor\", \"owner\"]; \
             rule 3: claim email_verified does not equal true; \
             rule 4: claim groups.0 does not equal \"founders\"; \
             rule 5: method POST is not one of [GET]",
        ),
    ];
    for (claims, method, allowed, note) in cases {
        let got = check(&f, method, "/x", with_claims(claims.clone())).await;
        assert_eq!(got, (allowed, note.to_owned()), "{claims}");
    }
    let sus = check(
        &f,
        "GET",
        "/x",
        with_claims(json!({"sub": "a", "suspended": true})),
    )
    .await;
    assert!(
        sus.1.ends_with("rule 5: claim suspended is present"),
        "{}",
        sus.1
    );

    // A consumer without claims (ApiKey) and no consumer at all: refused, and said so.
    let no_claims = Consumer {
        name: "bob".into(),
        ..Default::default()
    };
    let (allowed, note) = check(&f, "GET", "/x", Some(no_claims)).await;
    assert!(!allowed);
    assert!(
        note.starts_with("no rule allows: rule 0: consumer bob has no token claims;"),
        "{note}"
    );
    let (allowed, note) = check(&f, "GET", "/x", None).await;
    assert!(!allowed);
    assert_eq!(
        note,
        (0..6)
            .map(|i| format!("rule {i}: no authenticated consumer"))
            .collect::<Vec<_>>()
            .join("; ")
            .replace("rule 0", "no rule allows: rule 0")
    );
}

#[tokio::test]
async fn request_conditions_and_anonymous_rules() {
    let f = Arc::new(authorize(
        r#"{rules: [
            {methods: [GET, HEAD], paths: [{value: /public}, {type: Exact, value: /health}]},
            {consumers: [alice], paths: [{type: RegularExpression, value: "/orders/[0-9]+"}]},
            {groups: [admins, ops]}
        ]}"#,
    ));
    let alice = || {
        Some(Consumer {
            name: "alice".into(),
            groups: vec!["dev".into()],
            claims: None,
        })
    };
    let carol = || {
        Some(Consumer {
            name: "carol".into(),
            groups: vec!["ops".into()],
            claims: None,
        })
    };
    assert_eq!(
        check(&f, "GET", "/public/logo.png", None).await,
        (true, "rule 0 allows (no consumer needed)".into())
    );
    assert!(check(&f, "GET", "/health", None).await.0);
    assert!(
        !check(&f, "GET", "/publicity", None).await.0,
        "prefixes are segment-aware"
    );
    assert!(!check(&f, "GET", "/health/deep", None).await.0);
    assert!(check(&f, "PUT", "/orders/12", alice()).await.0);
    assert!(check(&f, "DELETE", "/anything", carol()).await.0);
    assert_eq!(
        check(&f, "POST", "/orders/12x", alice()).await,
        (
            false,
            "no rule allows: rule 0: method POST is not one of [GET, HEAD]; \
             rule 1: path /orders/12x matches none of [RegularExpression /orders/[0-9]+]; \
             rule 2: consumer alice is in none of groups [admins, ops]"
                .into()
        )
    );
    let (_, note) = check(&f, "GET", "/orders/1", carol()).await;
    assert!(note.contains("rule 2 allows consumer carol"), "{note}");
    let (allowed, note) = check(&f, "GET", "/orders/1", None).await;
    assert!(!allowed);
    assert!(note.contains("rule 1: no authenticated consumer"), "{note}");
    let bob = Consumer {
        name: "bob".into(),
        ..Default::default()
    };
    let (_, note) = check(&f, "GET", "/orders/1", Some(bob)).await;
    assert!(
        note.contains("rule 1: consumer bob is not one of [alice]"),
        "{note}"
    );
}

/// The live trace, with the step separator as plain ASCII (a header value).
fn explain_trace(r: &common::Reply) -> String {
    r.headers["x-meshgate-explain"]
        .to_str()
        .unwrap()
        .replace(" — ", " - ")
}

/// ApiKey then Authorize through a real gateway: consumers and groups decide,
/// refusals are 403 `forbidden` in the response and the access log, and the live
/// explain trace names the rule.
#[tokio::test]
async fn consumers_and_groups_through_the_gateway() {
    let b = Backend::start("svc").await;
    let keys: Vec<String> = (0..3).map(|_| generate_api_key().unwrap()).collect();
    let yaml = format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
admin: {{token: sesame, liveExplain: true}}
consumers:
  - {{name: alice, groups: [admins], apiKeys: [\"{}\"]}}
  - {{name: bob, groups: [readers], apiKeys: [\"{}\"]}}
  - {{name: eve, apiKeys: [\"{}\"]}}
policies:
  - {{name: keys, type: ApiKey, apiKey: {{}}}}
  - name: orders-access
    type: Authorize
    authorize:
      rules:
        - groups: [admins]
        - {{groups: [readers], methods: [GET], paths: [{{value: /orders}}]}}
routes:
  - {{name: api, policies: [keys, orders-access], backendRefs: [{{name: svc}}]}}
services:
{}",
        hash_api_key(&keys[0]),
        hash_api_key(&keys[1]),
        hash_api_key(&keys[2]),
        common::service("svc", &[b.addr])
    );
    let h = common::start(&yaml).await;
    let send = |method: Method, path: &'static str, key: &str| {
        let key = key.to_owned();
        let h = &h;
        async move {
            let headers = [
                ("x-api-key", key.as_str()),
                ("x-meshgate-explain", "sesame"),
            ];
            h.send(method, "h", path, &headers, Bytes::new()).await
        }
    };
    let r = send(Method::DELETE, "/orders/1", &keys[0]).await;
    assert_eq!(r.status, StatusCode::OK);
    let trace = explain_trace(&r);
    assert!(
        trace.contains("orders-access [Authorize]: continue - rule 0 allows consumer alice"),
        "{trace}"
    );
    assert_eq!(
        send(Method::GET, "/orders/1", &keys[1]).await.status,
        StatusCode::OK
    );
    let r = send(Method::POST, "/orders", &keys[1]).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    let trace = explain_trace(&r);
    assert!(
        trace.contains(
            "orders-access [Authorize]: deny 403 forbidden - no rule allows: \
             rule 0: consumer bob is in none of groups [admins]; \
             rule 1: method POST is not one of [GET]"
        ),
        "{trace}"
    );
    let r = send(Method::GET, "/orders", &keys[2]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(b.hits(), 2, "refused requests never reach the upstream");

    let log = h.log_lines(4).await;
    let rows: Vec<_> = log
        .iter()
        .map(|l| {
            (
                l["status"].as_u64().unwrap(),
                l["consumer"].as_str().unwrap_or_default().to_owned(),
                l["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let row = |s, c: &str, r: &str| (s, c.to_owned(), r.to_owned());
    assert_eq!(
        rows,
        [
            row(200, "alice", ""),
            row(200, "bob", ""),
            row(403, "bob", "forbidden"),
            row(403, "eve", "forbidden"),
        ]
    );
}
