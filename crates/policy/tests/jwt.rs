//! The `Jwt` policy through a real gateway, with real keys and tokens made here by
//! `meshgate_testkit::jwt` and a real JWKS server: every algorithm family accepted;
//! expired, early, foreign, forged, unsigned and key-confused tokens refused with
//! the reason in the access log and in `explain` (live `x-meshgate-explain`); the
//! identity told upstream without forgery; key rotation, floods of unknown `kid`s,
//! an issuer that is down at start; and the verified-token cache meeting `exp`.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use meshgate_testkit::Backend;
use meshgate_testkit::jwt::{Algorithm, Header, JwksServer, TestKey, jwks, now, unsigned};
use serde_json::{Value, json};

const ADMIN: &str = "explain-token";

/// A gateway config with policy `jwt` (settings in YAML flow style) on route `api`,
/// and `extra_routes` (full route entries) after it.
fn config(svc: &str, settings: &str, extra: &str) -> String {
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

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 600, "iss": "https://idp.test", "aud": "orders"})
}

/// A request with `Authorization: Bearer <token>` (if any), explained.
async fn call(
    h: &common::Harness,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> common::Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("x-meshgate-explain", ADMIN)];
    if let Some(b) = &bearer {
        headers.push(("authorization", b));
    }
    headers.extend_from_slice(extra);
    h.send(Method::GET, "api.test", path, &headers, Bytes::new())
        .await
}

fn trace(r: &common::Reply) -> String {
    r.headers
        .get("x-meshgate-explain")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Asserts a 401 `invalid_credentials` whose explanation and challenge say `why`.
fn assert_refused(r: &common::Reply, why: &str) {
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

#[tokio::test]
async fn every_algorithm_family_is_accepted() {
    let b = Backend::start("svc").await;
    let public: Vec<TestKey> = [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ]
    .into_iter()
    .map(|a| TestKey::generate(a, &format!("{a:?}-key")))
    .collect();
    let server = JwksServer::start(&public.iter().collect::<Vec<_>>()).await;
    let hmac = TestKey::hmac(
        Algorithm::HS256,
        "h1",
        b"0123456789abcdef0123456789abcdef-hmac",
    );
    let pem = TestKey::generate(Algorithm::ES256, "unused");
    let extra = format!(
        "  - {{name: hs, type: Jwt, jwt: {{algorithms: [HS256], keys: [{{kid: h1, secret: \"{}\"}}]}}}}
  - {{name: pem, type: Jwt, jwt: {{algorithms: [ES256], keys: [{{publicKeyPem: {}}}]}}}}
  - {{name: inline, type: Jwt, jwt: {{algorithms: [RS256], jwks: {}}}}}
",
        std::str::from_utf8(hmac.secret().unwrap()).unwrap(),
        serde_json::to_string(&pem.public_pem().unwrap()).unwrap(),
        jwks(&[&public[0]]),
    );
    let yaml = config(
        &common::service("svc", &[b.addr]),
        &format!("{{algorithms: [RS256, PS256, ES256, ES384, EdDSA], jwksUrl: \"{}\"}}", server.url()),
        &extra,
    )
    .replace(
        "routes:\n",
        "routes:\n  - {name: hs, matches: [{path: {value: /hs}}], policies: [hs], backendRefs: [{name: svc}]}\n  \
         - {name: pem, matches: [{path: {value: /pem}}], policies: [pem], backendRefs: [{name: svc}]}\n  \
         - {name: inline, matches: [{path: {value: /inline}}], policies: [inline], backendRefs: [{name: svc}]}\n",
    );
    let h = common::start(&yaml).await;

    for key in &public {
        let r = call(
            &h,
            "/orders",
            Some(&key.sign(&claims(&format!("{:?}", key.alg())))),
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{key:?}: {}", trace(&r));
        assert_eq!(
            r.json()["headers"]["x-consumer"],
            format!("{:?}", key.alg())
        );
    }
    let r = call(&h, "/hs", Some(&hmac.sign(&claims("hmac-user"))), &[]).await;
    assert_eq!(
        (r.status, r.json()["headers"]["x-consumer"].clone()),
        (StatusCode::OK, "hmac-user".into())
    );
    // A PEM key has no kid: tokens with or without one are checked against it.
    let mut no_kid = Header::new(Algorithm::ES256);
    no_kid.kid = None;
    for token in [
        pem.sign(&claims("pem-user")),
        pem.sign_with(no_kid, &claims("pem-user")),
    ] {
        let r = call(&h, "/pem", Some(&token), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", trace(&r));
    }
    let r = call(
        &h,
        "/inline",
        Some(&public[0].sign(&claims("inline-user"))),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", trace(&r));
    // Keys of one route's policy are not keys of another's.
    let r = call(&h, "/pem", Some(&public[2].sign(&claims("x"))), &[]).await;
    assert_refused(&r, "bad signature (ES256, kid ES256-key)");
    // A JWK that names its alg verifies only that alg (the RSA key is RS256-only).
    let mut ps = Header::new(Algorithm::PS256);
    ps.kid = Some("RS256-key".into());
    let r = call(
        &h,
        "/orders",
        Some(&public[0].sign_with(ps, &claims("x"))),
        &[],
    )
    .await;
    assert_refused(
        &r,
        "kid RS256-key is not a key for PS256 (RSA key for RS256)",
    );
    assert_eq!(server.fetches(), 1, "one JWKS fetch serves every token");
}

#[tokio::test]
async fn refused_tokens_say_why() {
    let b = Backend::start("svc").await;
    let key = TestKey::generate(Algorithm::RS256, "k1");
    let server = JwksServer::start(&[&key]).await;
    let settings = format!(
        "{{algorithms: [RS256], jwksUrl: \"{}\", issuer: \"https://idp.test\", audiences: [orders, billing], clockSkew: 30s}}",
        server.url()
    );
    let h = common::start(&config(&common::service("svc", &[b.addr]), &settings, "")).await;
    let t = now();
    let with = |patch: Value| {
        let mut c = claims("alice");
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };

    let r = call(&h, "/orders", None, &[]).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::UNAUTHORIZED, "missing_credentials".into())
    );
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert!(
        trace(&r).contains("no token (header authorization (Bearer))"),
        "{}",
        trace(&r)
    );

    // Within the clock skew: accepted.
    for patch in [
        json!({"exp": t - 10}),
        json!({"nbf": t + 10}),
        json!({"aud": ["x", "billing"]}),
    ] {
        let r = call(&h, "/orders", Some(&key.sign(&with(patch.clone()))), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{patch}: {}", trace(&r));
    }
    let expired = key.sign(&with(json!({"exp": t - 120})));
    let r = call(&h, "/orders", Some(&expired), &[]).await;
    assert_refused(&r, &format!("exp {} is in the past", rfc3339(t - 120)));
    let r = call(
        &h,
        "/orders",
        Some(&key.sign(&with(json!({"nbf": t + 120})))),
        &[],
    )
    .await;
    assert_refused(&r, &format!("nbf {} is in the future", rfc3339(t + 120)));
    let r = call(
        &h,
        "/orders",
        Some(&key.sign(&with(json!({"iss": "https://evil.test"})))),
        &[],
    )
    .await;
    assert_refused(
        &r,
        "iss \"https://evil.test\" not accepted (expected \"https://idp.test\")",
    );
    let r = call(
        &h,
        "/orders",
        Some(&key.sign(&with(json!({"aud": "x"})))),
        &[],
    )
    .await;
    assert_refused(&r, "aud \"x\" not accepted");
    let mut no_exp = claims("alice");
    no_exp.as_object_mut().unwrap().remove("exp");
    let r = call(&h, "/orders", Some(&key.sign(&no_exp)), &[]).await;
    assert_refused(&r, "exp missing (required)");

    // Signed by another key under the same kid; and a good token with its claims edited.
    let impostor = TestKey::generate(Algorithm::RS256, "k1");
    let r = call(&h, "/orders", Some(&impostor.sign(&claims("alice"))), &[]).await;
    assert_refused(&r, "bad signature (RS256, kid k1)");
    let good = key.sign(&claims("alice"));
    let parts: Vec<&str> = good.split('.').collect();
    let forged_body = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims("admin").to_string())
    };
    let tampered = format!("{}.{forged_body}.{}", parts[0], parts[2]);
    let r = call(&h, "/orders", Some(&tampered), &[]).await;
    assert_refused(&r, "bad signature (RS256, kid k1)");
    let r = call(&h, "/orders", Some(&unsigned(&claims("alice"))), &[]).await;
    assert_refused(&r, "alg none is never accepted");
    // Key confusion: HS256 "signed" with the RSA public key as the HMAC secret.
    let confused = TestKey::hmac(Algorithm::HS256, "k1", key.public_pem().unwrap().as_bytes());
    let r = call(&h, "/orders", Some(&confused.sign(&claims("alice"))), &[]).await;
    assert_refused(&r, "alg HS256 not accepted (accepted: RS256)");
    let r = call(&h, "/orders", Some("not-a-jwt"), &[]).await;
    assert_refused(&r, "malformed token (expected three dot-separated parts)");

    assert_eq!(
        b.hits(),
        3,
        "only the three good tokens reached the upstream"
    );
    let log = h.log_lines(14).await;
    let reasons: Vec<Value> = log.iter().map(|l| l["reason"].clone()).collect();
    let mut want = vec![
        json!("missing_credentials"),
        Value::Null,
        Value::Null,
        Value::Null,
    ];
    want.extend(std::iter::repeat_n(json!("invalid_credentials"), 10));
    assert_eq!(reasons, want);
    assert_eq!(log[1]["consumer"], "alice");
}

#[tokio::test]
async fn identity_reaches_the_upstream_and_forgeries_do_not() {
    let b = Backend::start("svc").await;
    let key = TestKey::generate(Algorithm::ES256, "k1");
    let server = JwksServer::start(&[&key]).await;
    let settings = format!(
        "{{algorithms: [ES256], jwksUrl: \"{}\", groupsClaim: scope, \
         tokenFrom: [{{header: authorization, prefix: \"Bearer \"}}, {{cookie: session}}, {{queryParam: access_token}}], \
         claimHeaders: [{{claim: email, header: x-user-email}}, {{claim: org.id, header: x-org}}]}}",
        server.url()
    );
    let extra = format!(
        "  - {{name: fwd, type: Jwt, jwt: {{algorithms: [ES256], jwksUrl: \"{}\", forwardToken: true, consumerClaim: email}}}}\n",
        server.url()
    );
    let yaml = config(&common::service("svc", &[b.addr]), &settings, &extra).replace(
        "routes:\n",
        "routes:\n  - {name: fwd, matches: [{path: {value: /fwd}}], policies: [fwd], backendRefs: [{name: svc}]}\n",
    );
    let h = common::start(&yaml).await;
    let mut c = claims("alice");
    c["scope"] = json!("orders:read orders:write");
    c["email"] = json!("alice@example.test");
    c["org"] = json!({"id": 42});
    let token = key.sign(&c);
    let forged = [
        ("x-consumer", "admin"),
        ("x-consumer-groups", "root"),
        ("x-user-email", "boss@example.test"),
        ("x-org", "1"),
    ];

    let r = call(&h, "/orders", Some(&token), &forged).await;
    assert_eq!(r.status, StatusCode::OK, "{}", trace(&r));
    let seen = &r.json()["headers"];
    assert_eq!(seen["x-consumer"], "alice");
    assert_eq!(seen["x-consumer-groups"], "orders:read,orders:write");
    assert_eq!(seen["x-user-email"], "alice@example.test");
    assert_eq!(seen["x-org"], "42");
    assert!(
        seen.get("authorization").is_none(),
        "the token is not forwarded: {seen}"
    );
    assert!(
        trace(&r).contains("jwt [Jwt]: continue - consumer alice (ES256, kid k1)"),
        "{}",
        trace(&r)
    );

    // A token without the optional claims: the forged copies are gone all the same.
    let r = call(&h, "/orders", Some(&key.sign(&claims("bob"))), &forged).await;
    let seen = &r.json()["headers"];
    assert_eq!(
        (
            seen["x-consumer"].clone(),
            seen["x-consumer-groups"].clone()
        ),
        (json!("bob"), json!(""))
    );
    assert!(
        seen.get("x-user-email").is_none() && seen.get("x-org").is_none(),
        "{seen}"
    );

    // From a cookie (other cookies kept) and from the query string (removed).
    let cookie = format!("theme=dark; session={token}; lang=en");
    let r = call(&h, "/orders", None, &[("cookie", &cookie)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", trace(&r));
    assert_eq!(r.json()["headers"]["cookie"], "theme=dark; lang=en");
    let r = call(
        &h,
        &format!("/orders?page=2&access_token={token}"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.json()["query"].clone()),
        (StatusCode::OK, json!("page=2"))
    );

    // Forged identity without a token: refused before the upstream.
    let r = call(&h, "/orders", None, &forged).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // forwardToken and another consumer claim.
    let r = call(&h, "/fwd", Some(&token), &[]).await;
    assert_eq!(
        r.json()["headers"]["authorization"],
        format!("Bearer {token}")
    );
    assert_eq!(r.json()["headers"]["x-consumer"], "alice@example.test");
    assert_eq!(b.hits(), 5);
}

#[tokio::test]
async fn key_rotation_costs_one_fetch_and_withdrawn_keys_stop_working() {
    let b = Backend::start("svc").await;
    let (old, new) = (
        TestKey::generate(Algorithm::RS256, "2026-01"),
        TestKey::generate(Algorithm::RS256, "2026-02"),
    );
    let server = JwksServer::start(&[&old]).await;
    let settings = format!(
        "{{algorithms: [RS256], jwksUrl: \"{}\", jwksMinRefreshInterval: 300ms}}",
        server.url()
    );
    let h = common::start(&config(&common::service("svc", &[b.addr]), &settings, "")).await;
    assert!(
        server.wait_fetches(1, Duration::from_secs(10)).await,
        "fetched at compile time"
    );

    let old_token = old.sign(&claims("alice"));
    assert_eq!(
        call(&h, "/orders", Some(&old_token), &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(server.fetches(), 1);

    server.set_keys(&[&new]);
    let new_token = new.sign(&claims("bob"));
    // Until the rate limit allows a fetch the new kid is refused without one; then
    // one fetch brings it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = call(&h, "/orders", Some(&new_token), &[]).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert_refused(&r, "unknown kid 2026-02 (JWKS fetched");
        assert!(
            Instant::now() < deadline,
            "new key never accepted: {}",
            trace(&r)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.fetches(), 2, "exactly one extra fetch");
    // The key set changed, so the cached old token is checked again: its key is gone.
    let r = call(&h, "/orders", Some(&old_token), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", trace(&r));
    assert!(trace(&r).contains("unknown kid 2026-01"), "{}", trace(&r));
}

#[tokio::test]
async fn a_flood_of_unknown_kids_does_not_flood_the_issuer() {
    let b = Backend::start("svc").await;
    let key = TestKey::generate(Algorithm::ES256, "real");
    let server = JwksServer::start(&[&key]).await;
    let settings = format!(
        "{{algorithms: [ES256], jwksUrl: \"{}\", jwksMinRefreshInterval: 1s}}",
        server.url()
    );
    let h = std::sync::Arc::new(
        common::start(&config(&common::service("svc", &[b.addr]), &settings, "")).await,
    );
    assert!(server.wait_fetches(1, Duration::from_secs(10)).await);
    // Let the rate limit allow one fetch again, so the flood can cause some.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let h = h.clone();
        let forged = TestKey::generate(Algorithm::ES256, &format!("forged-{}", fastrand::u64(..)));
        tasks.spawn(async move {
            call(&h, "/orders", Some(&forged.sign(&claims("mallory"))), &[])
                .await
                .status
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let extra = server.fetches() - 1;
    let allowed = 1 + started.elapsed().as_secs() as usize;
    assert!(
        (1..=allowed).contains(&extra),
        "{extra} fetches for 200 forged kids in {:?}",
        started.elapsed()
    );
    assert_eq!(
        call(&h, "/orders", Some(&key.sign(&claims("alice"))), &[])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn jwks_down_at_start_refuses_then_recovers() {
    let b = Backend::start("svc").await;
    let key = TestKey::generate(Algorithm::EdDSA, "k1");
    let addr = common::dead_addr();
    let url = format!("http://{addr}{}", JwksServer::PATH);
    let settings =
        format!("{{algorithms: [EdDSA], jwksUrl: \"{url}\", jwksMinRefreshInterval: 200ms}}");
    let h = common::start(&config(&common::service("svc", &[b.addr]), &settings, "")).await;
    let token = key.sign(&claims("alice"));

    let r = call(&h, "/orders", Some(&token), &[]).await;
    assert_refused(
        &r,
        &format!("unknown kid k1 (JWKS {url} could not be fetched: "),
    );

    let server = JwksServer::start_on(addr, JwksServer::PATH, &[&key])
        .await
        .expect("bind the JWKS port again");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = call(&h, "/orders", Some(&token), &[]).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(Instant::now() < deadline, "never recovered: {}", trace(&r));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.fetches(), 1, "keys held: no more fetches");
    assert_eq!(
        call(&h, "/orders", Some(&token), &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn cached_tokens_still_expire() {
    let b = Backend::start("svc").await;
    let key = TestKey::generate(Algorithm::PS256, "k1");
    let settings = format!(
        "{{algorithms: [PS256], jwks: {}, clockSkew: 0s}}",
        jwks(&[&key])
    );
    let h = common::start(&config(&common::service("svc", &[b.addr]), &settings, "")).await;
    let exp = now() + 2;
    let token = key.sign(&json!({"sub": "alice", "exp": exp}));

    let first = call(&h, "/orders", Some(&token), &[]).await;
    assert!(
        trace(&first).contains("consumer alice (PS256, kid k1)"),
        "{}",
        trace(&first)
    );
    for _ in 0..20 {
        let r = call(&h, "/orders", Some(&token), &[]).await;
        if now() > exp {
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", trace(&r));
        assert!(
            trace(&r).contains("consumer alice (verified earlier)"),
            "{}",
            trace(&r)
        );
    }
    // Wait out exp (one-second resolution), then the cached token is refused.
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..2 {
        let r = call(&h, "/orders", Some(&token), &[]).await;
        assert_refused(&r, &format!("exp {} is in the past", rfc3339(exp)));
    }
    let fresh = key.sign(&json!({"sub": "alice", "exp": now() + 60}));
    assert_eq!(
        call(&h, "/orders", Some(&fresh), &[]).await.status,
        StatusCode::OK
    );
}

/// `2026-11-20T10:00:00Z`, computed independently of the policy (via `date`).
fn rfc3339(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date runs");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn periodic_refresh_drops_withdrawn_keys_from_the_cache() {
    let b = Backend::start("svc").await;
    let (a, c) = (
        TestKey::generate(Algorithm::ES256, "a"),
        TestKey::generate(Algorithm::ES256, "c"),
    );
    let server = JwksServer::start(&[&a]).await;
    let settings = format!(
        "{{algorithms: [ES256], jwksUrl: \"{}\", jwksRefresh: 300ms, jwksMinRefreshInterval: 300ms}}",
        server.url()
    );
    let h = common::start(&config(&common::service("svc", &[b.addr]), &settings, "")).await;
    let token = a.sign(&claims("alice"));
    assert_eq!(
        call(&h, "/orders", Some(&token), &[]).await.status,
        StatusCode::OK
    );

    // Key `a` is withdrawn; the token is cached, yet a periodic refresh (in the
    // background, triggered by traffic) notices and it is refused.
    server.set_keys(&[&c]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = call(&h, "/orders", Some(&token), &[]).await;
        if r.status == StatusCode::UNAUTHORIZED {
            assert!(trace(&r).contains("unknown kid a"), "{}", trace(&r));
            break;
        }
        assert!(Instant::now() < deadline, "withdrawn key still accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.fetches() >= 2);
}

/// examples/jwt.yaml, with its demo tokens, does what its header comments say.
#[tokio::test]
async fn the_example_behaves_as_documented() {
    let b = Backend::start("app").await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/jwt.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let token = |name: &str| {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("#   {name}=")))
            .unwrap();
        line.split_once('=').unwrap().1.trim().to_owned()
    };
    let yaml = text
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9001", &b.addr.to_string())
        .replace(
            "admin: {address: \"127.0.0.1:0\"}",
            &format!("admin: {{enabled: false, token: {ADMIN}, liveExplain: true}}"),
        );
    let h = common::start(&yaml).await;

    let r = call(&h, "/orders", Some(&token("GOOD")), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", trace(&r));
    assert_eq!(r.json()["headers"]["x-consumer"], "alice");
    assert_eq!(r.json()["headers"]["x-consumer-groups"], "partners,beta");
    let r = call(&h, "/orders", Some(&token("EXPIRED")), &[]).await;
    assert_refused(&r, "exp 2023-11-14T22:13:20Z is in the past");
    let r = call(&h, "/orders", Some(&token("OTHER_AUD")), &[]).await;
    assert_refused(&r, "aud \"billing\" not accepted");
    let r = call(&h, "/orders", None, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
