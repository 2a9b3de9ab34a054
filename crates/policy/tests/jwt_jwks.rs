//! The `Jwt` policy and a real JWKS server: key rotation, floods of unknown
//! `kid`s, an issuer that is down at start, periodic refresh, and the
//! verified-token cache meeting `exp`.

mod common;

use std::time::{Duration, Instant};

use http::StatusCode;
use meshgate_testkit::Backend;
use meshgate_testkit::jwt::{Algorithm, JwksServer, TestKey, jwks, now};
use serde_json::json;

use common::jwt::*;

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
