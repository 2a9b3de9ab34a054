//! Release techniques through a real gateway and real backends: a weighted canary
//! split measured over 10,000 requests, blue/green switched by a reload under load
//! without a failed request, header and cookie canaries by route matching, and
//! sticky assignment (`backendAffinity`) keeping each user on one version — also
//! while the canary's share grows.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Method, StatusCode};
use meshgate_testkit::Backend;

fn config(v1: u32, v2: u32, route_extra: &str, a: &Backend, b: &Backend) -> String {
    format!(
        "listeners: [{{name: l, address: \"127.0.0.1:0\"}}]
routes:
  - name: canary-by-header
    matches: [{{path: {{value: /}}, headers: [{{name: x-canary, value: \"true\"}}]}}]
    backendRefs: [{{name: v2}}]
  - name: canary-by-cookie
    matches: [{{path: {{value: /}}, headers: [{{name: cookie, type: RegularExpression, value: \"(.*; )?canary=1(;.*)?\"}}]}}]
    backendRefs: [{{name: v2}}]
  - name: split
    backendRefs: [{{name: v1, weight: {v1}}}, {{name: v2, weight: {v2}}}]
{route_extra}
services:
{}{}",
        common::service("v1", &[a.addr]),
        common::service("v2", &[b.addr])
    )
}

/// Sends `n` GETs from `workers` concurrent tasks; returns how many each backend got.
async fn spread(
    h: &Arc<common::Harness>,
    n: usize,
    headers: &'static [(&'static str, &'static str)],
) -> (usize, usize) {
    let v1 = Arc::new(AtomicUsize::new(0));
    let v2 = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (h, v1, v2, next) = (h.clone(), v1.clone(), v2.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let r = h.send(Method::GET, "h", "/x", headers, Bytes::new()).await;
                assert_eq!(r.status, StatusCode::OK);
                match r.backend().as_str() {
                    "v1" => v1.fetch_add(1, Ordering::Relaxed),
                    _ => v2.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (v1.load(Ordering::Relaxed), v2.load(Ordering::Relaxed))
}

#[tokio::test]
async fn a_95_5_split_holds_within_one_percent_over_10000_requests() {
    let (a, b) = (Backend::start("v1").await, Backend::start("v2").await);
    let h = Arc::new(common::start(&config(95, 5, "", &a, &b)).await);
    let (v1, v2) = spread(&h, 10_000, &[]).await;
    assert_eq!(v1 + v2, 10_000);
    let share = v2 as f64 / 10_000.0;
    assert!(
        (share - 0.05).abs() <= 0.01,
        "canary share {share} (v1 {v1}, v2 {v2})"
    );
}

#[tokio::test]
async fn blue_green_switch_by_reload_loses_no_request() {
    let (blue, green) = (Backend::start("v1").await, Backend::start("v2").await);
    let h = Arc::new(common::start(&config(100, 0, "", &blue, &green)).await);
    assert_eq!(spread(&h, 200, &[]).await, (200, 0), "all blue");

    // Load keeps running while the weights flip.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let load = {
        let (h, stop, failures) = (h.clone(), stop.clone(), failures.clone());
        tokio::spawn(async move {
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = h.get("h", "/x").await;
                if r.status != StatusCode::OK {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                sent += 1;
            }
            sent
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let next = meshgate_config::parse_str(&config(0, 100, "", &blue, &green), "t.yaml").unwrap();
    h.gateway.apply(next).await.unwrap();
    assert_eq!(
        spread(&h, 200, &[]).await,
        (0, 200),
        "all green right after the reload"
    );
    stop.store(true, Ordering::Relaxed);
    let sent = load.await.unwrap();
    assert!(sent > 10, "the load ran ({sent} requests)");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request failed during the switch"
    );
}

#[tokio::test]
async fn header_and_cookie_canaries_reach_v2_only() {
    let (a, b) = (Backend::start("v1").await, Backend::start("v2").await);
    let h = Arc::new(common::start(&config(100, 0, "", &a, &b)).await);
    assert_eq!(spread(&h, 50, &[("x-canary", "true")]).await, (0, 50));
    assert_eq!(
        spread(&h, 50, &[("cookie", "session=abc; canary=1")]).await,
        (0, 50)
    );
    assert_eq!(spread(&h, 50, &[("cookie", "canary=0")]).await, (50, 0));
    assert_eq!(spread(&h, 50, &[]).await, (50, 0));
}

#[tokio::test]
async fn affinity_keeps_each_user_on_one_version_as_the_canary_grows() {
    let (a, b) = (Backend::start("v1").await, Backend::start("v2").await);
    let sticky = "    backendAffinity: {header: x-user}";
    let h = common::start(&config(90, 10, sticky, &a, &b)).await;
    let version_of = |user: String| {
        let h = &h;
        async move {
            let r = h
                .send(Method::GET, "h", "/x", &[("x-user", &user)], Bytes::new())
                .await;
            r.backend()
        }
    };
    let mut first = Vec::new();
    for u in 0..1000 {
        first.push(version_of(format!("user-{u}")).await);
    }
    let on_v2 = first.iter().filter(|v| *v == "v2").count();
    assert!(
        (60..=140).contains(&on_v2),
        "about 10% of 1000 users on v2: {on_v2}"
    );
    for u in (0..1000).step_by(50) {
        for _ in 0..5 {
            assert_eq!(
                version_of(format!("user-{u}")).await,
                first[u],
                "user-{u} moved"
            );
        }
    }

    // The canary grows to 50%: every user who was on v2 stays there.
    let next = meshgate_config::parse_str(&config(50, 50, sticky, &a, &b), "t.yaml").unwrap();
    h.gateway.apply(next).await.unwrap();
    let mut now_on_v2 = 0;
    for (u, before) in first.iter().enumerate() {
        let now = version_of(format!("user-{u}")).await;
        if before == "v2" {
            assert_eq!(now, "v2", "user-{u} left the canary when it grew");
        }
        now_on_v2 += usize::from(now == "v2");
    }
    assert!(
        (400..=600).contains(&now_on_v2),
        "about half on v2: {now_on_v2}"
    );
}
