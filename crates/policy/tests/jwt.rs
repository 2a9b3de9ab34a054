//! The `Jwt` policy through a real gateway, with real keys and tokens made here by
//! `meshgate_testkit::jwt`: every algorithm family accepted; expired, early,
//! foreign, forged, unsigned and key-confused tokens refused with the reason in the
//! access log and in `explain` (live `x-meshgate-explain`); the identity told
//! upstream without forgery; the example config. JWKS behaviour: `jwt_jwks.rs`.

mod common;

use http::StatusCode;
use meshgate_testkit::Backend;
use meshgate_testkit::jwt::{Algorithm, Header, JwksServer, TestKey, jwks, now, unsigned};
use serde_json::{Value, json};

use common::jwt::*;

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

/// examples/jwt.yaml, with its demo tokens, does what its header comments say.
#[tokio::test]
async fn the_example_behaves_as_documented() {
    let b = Backend::start("app").await;
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test");
    let path = format!("{manifest}/../../examples/jwt.yaml");
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
