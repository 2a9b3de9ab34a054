//! The `BasicAuth` policy through a real gateway (hyper client and curl): argon2
//! and bcrypt hashes made here, only hashes in config; the challenge on every 401;
//! identity told upstream, forged copies and the password never; successful checks
//! remembered until the consumers change; unknown user names cost a real hash.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};
use meshgate_core::filter::{Filter, Flow, RequestCx};
use meshgate_policy::basic_auth::{BasicAuth, hash_password};
use meshgate_testkit::Backend;

const CHALLENGE: &str = "Basic realm=\"meshgate\", charset=\"UTF-8\"";

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// alice: argon2id as `meshgate keys password` makes it; bob: bcrypt (cost 4, to
/// keep the debug-build tests quick) under a user name of his own.
fn config(svc: &str, alice_hash: &str, bob_hash: &str) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
consumers:
  - {{name: alice, groups: [ops, dev], basicAuth: {{passwordHash: \"{alice_hash}\"}}}}
  - {{name: bob, basicAuth: {{username: bob@example.com, passwordHash: \"{bob_hash}\"}}}}
policies:
  - {{name: basic, type: BasicAuth, basicAuth: {{}}}}
routes:
  - {{name: api, policies: [basic], backendRefs: [{{name: svc}}]}}
services:
{svc}"
    )
}

async fn with_auth(h: &common::Harness, headers: &[(&str, &str)]) -> common::Reply {
    h.send(Method::GET, "h", "/orders", headers, Bytes::new())
        .await
}

#[tokio::test]
async fn basic_credentials_authenticate_consumers() {
    let b = Backend::start("svc").await;
    let alice_hash = hash_password(b"correct horse").unwrap();
    let bob_hash = bcrypt::hash("battery staple", 4).unwrap();
    let yaml = config(&common::service("svc", &[b.addr]), &alice_hash, &bob_hash);
    assert!(!yaml.contains("correct horse") && !yaml.contains("battery staple"));
    let h = common::start(&yaml).await;

    // Refusals, each with the challenge RFC 9110 requires on a 401.
    let refusals = [
        (vec![], "missing_credentials"),
        (vec![("authorization", "Bearer abc")], "missing_credentials"),
        (
            vec![("authorization", "Basic !!!not-base64")],
            "invalid_credentials",
        ),
        (
            vec![("authorization", "Basic bm9jb2xvbg==")],
            "invalid_credentials",
        ),
    ];
    for (headers, reason) in &refusals {
        let r = with_auth(&h, headers).await;
        assert_eq!(
            (r.status, r.json()["error"].as_str().unwrap()),
            (StatusCode::UNAUTHORIZED, *reason),
            "{headers:?}"
        );
        assert_eq!(r.headers["www-authenticate"], CHALLENGE, "{headers:?}");
    }
    let wrong = basic("alice", "incorrect horse");
    let unknown = basic("mallory", "correct horse");
    for auth in [&wrong, &unknown] {
        let r = with_auth(&h, &[("authorization", auth)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.json()["error"], "invalid_credentials");
        assert_eq!(r.headers["www-authenticate"], CHALLENGE);
    }
    assert_eq!(b.hits(), 0);

    // alice (argon2), with forged identity headers that must not survive.
    let good = basic("alice", "correct horse");
    for _ in 0..2 {
        let r = with_auth(
            &h,
            &[
                ("authorization", &good),
                ("x-consumer", "admin"),
                ("x-consumer-groups", "root"),
            ],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let seen = &r.json()["headers"];
        assert_eq!(seen["x-consumer"], "alice");
        assert_eq!(seen["x-consumer-groups"], "ops,dev");
        assert!(
            seen.get("authorization").is_none(),
            "the password never goes upstream"
        );
    }
    // The scheme name is case-insensitive (RFC 9110).
    let lower = good.replacen("Basic", "basic", 1);
    assert_eq!(
        with_auth(&h, &[("authorization", &lower)]).await.status,
        StatusCode::OK
    );

    // bob (bcrypt) through real curl, which builds the header itself.
    let out = h
        .curl(&["-u", "bob@example.com:battery staple", &h.url("/orders")])
        .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"x-consumer\":\"bob\""), "{out}");
    let out = h
        .curl(&["-u", "bob@example.com:nope", &h.url("/orders")])
        .await;
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains(&format!(
            "www-authenticate: {}",
            CHALLENGE.to_ascii_lowercase()
        )),
        "{out}"
    );

    let log = h.log_lines(11).await;
    let rows: Vec<_> = log
        .iter()
        .map(|l| {
            (
                l["status"].as_u64().unwrap(),
                l["consumer"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let anon = |s| (s, None);
    let who = |s, n: &str| (s, Some(n.to_owned()));
    assert_eq!(
        rows,
        [
            anon(401),
            anon(401),
            anon(401),
            anon(401),
            anon(401),
            anon(401),
            who(200, "alice"),
            who(200, "alice"),
            who(200, "alice"),
            who(200, "bob"),
            anon(401),
        ]
    );
    assert_eq!(log[0]["reason"], "missing_credentials");
    assert_eq!(log[4]["reason"], "invalid_credentials");
}

fn cx() -> RequestCx<'static> {
    RequestCx::new("t", "http", "h", 80, std::net::Ipv4Addr::LOCALHOST.into())
}

fn parts(authorization: &str) -> http::request::Parts {
    http::Request::get("/x")
        .header("authorization", authorization)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn consumers(yaml: &str) -> Vec<meshgate_config::Consumer> {
    meshgate_config::parse_str(yaml, "t.yaml")
        .unwrap_or_else(|e| panic!("{e}"))
        .consumers
}

/// Runs the filter the way the chain does: synchronously, then the deferred part.
async fn run(f: &BasicAuth, auth: &str) -> (bool, Flow) {
    let mut req = parts(auth);
    let mut cx = cx();
    match f.on_request(&mut req, &mut cx) {
        Flow::Defer => (true, f.on_request_async(&mut req, &mut cx).await),
        done => (false, done),
    }
}

#[tokio::test]
async fn verified_credentials_are_remembered_and_misses_run_off_the_worker() {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let c = consumers(&format!(
        "consumers: [{{name: alice, basicAuth: {{passwordHash: \"{hash}\"}}}}]"
    ));
    let f = BasicAuth::compile(&Default::default(), &c).unwrap();
    let good = basic("alice", "pw");

    let (deferred, flow) = run(&f, &good).await;
    assert!(deferred, "a first check is deferred to the blocking pool");
    assert!(matches!(flow, Flow::Continue), "{flow:?}");
    assert_eq!(f.cached(), 1);
    let (deferred, flow) = run(&f, &good).await;
    assert!(!deferred, "a remembered check is answered synchronously");
    assert!(matches!(flow, Flow::Continue));

    // Failures are never remembered: each costs a full check.
    for _ in 0..2 {
        let (deferred, flow) = run(&f, &basic("alice", "PW")).await;
        assert!(deferred);
        assert!(matches!(flow, Flow::Reject(e) if e.reason() == "invalid_credentials"));
    }
    assert_eq!(f.cached(), 1);

    // cacheTtl 0s: every request is checked.
    let settings = meshgate_config::BasicAuthPolicy {
        cache_ttl: meshgate_config::Duration::from_secs(0),
        ..Default::default()
    };
    let f = BasicAuth::compile(&settings, &c).unwrap();
    for _ in 0..2 {
        let (deferred, flow) = run(&f, &good).await;
        assert!(deferred && matches!(flow, Flow::Continue));
    }
    assert_eq!(f.cached(), 0);

    // Many concurrent misses all complete (bounded verification slots, no deadlock).
    let f = Arc::new(BasicAuth::compile(&Default::default(), &c).unwrap());
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let f = f.clone();
            let auth = basic("alice", if i % 2 == 0 { "pw" } else { "bad" });
            tokio::spawn(async move { matches!(run(&f, &auth).await.1, Flow::Continue) })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 8);
}

/// An unknown user name is verified against a real hash too, so it costs about
/// what a wrong password costs. Loose bound: without the decoy check it would be
/// thousands of times faster.
#[tokio::test]
async fn unknown_users_cost_a_real_hash() {
    let hash = bcrypt::hash("pw", 8).unwrap();
    let c = consumers(&format!(
        "consumers: [{{name: alice, basicAuth: {{passwordHash: \"{hash}\"}}}}]"
    ));
    let settings = meshgate_config::BasicAuthPolicy {
        cache_ttl: meshgate_config::Duration::from_secs(0),
        ..Default::default()
    };
    let f = BasicAuth::compile(&settings, &c).unwrap();
    let fastest = |auth: String| {
        let f = &f;
        async move {
            let mut best = Duration::MAX;
            for _ in 0..3 {
                let started = Instant::now();
                let (deferred, flow) = run(f, &auth).await;
                assert!(deferred && matches!(flow, Flow::Reject(_)));
                best = best.min(started.elapsed());
            }
            best
        }
    };
    let wrong = fastest(basic("alice", "nope")).await;
    let unknown = fastest(basic("mallory", "nope")).await;
    assert!(
        unknown * 4 >= wrong,
        "unknown user {unknown:?} vs wrong password {wrong:?}"
    );
}

/// A changed password applies at once: the remembered check goes with the old
/// consumers (the policy is recompiled with an empty cache).
#[tokio::test]
async fn a_changed_password_is_not_served_from_the_cache() {
    let b = Backend::start("svc").await;
    let svc = common::service("svc", &[b.addr]);
    let old = bcrypt::hash("old", 4).unwrap();
    let new = bcrypt::hash("new", 4).unwrap();
    let h = common::start(&config(&svc, &old, &old)).await;
    let auth = |pw| basic("alice", pw);
    assert_eq!(
        with_auth(&h, &[("authorization", &auth("old"))])
            .await
            .status,
        StatusCode::OK
    );
    let changed = meshgate_config::parse_str(&config(&svc, &new, &old), "t.yaml").unwrap();
    h.gateway.apply(changed).await.unwrap();
    assert_eq!(
        with_auth(&h, &[("authorization", &auth("old"))])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        with_auth(&h, &[("authorization", &auth("new"))])
            .await
            .status,
        StatusCode::OK
    );
}

/// Credentials longer than the stack buffer decode on the heap, the same way.
#[tokio::test]
async fn long_credentials_work() {
    let password = "p".repeat(400);
    let hash = hash_password(password.as_bytes()).unwrap();
    let c = consumers(&format!(
        "consumers: [{{name: alice, basicAuth: {{passwordHash: \"{hash}\"}}}}]"
    ));
    let f = BasicAuth::compile(&Default::default(), &c).unwrap();
    let (deferred, flow) = run(&f, &basic("alice", &password)).await;
    assert!(deferred && matches!(flow, Flow::Continue), "{flow:?}");
    let (deferred, flow) = run(&f, &basic("alice", &password)).await;
    assert!(!deferred && matches!(flow, Flow::Continue), "remembered");
    let (_, flow) = run(&f, &basic("alice", &"p".repeat(399))).await;
    assert!(matches!(flow, Flow::Reject(_)));
}
