//! Load balancing through a real gateway to real backends: the gateway's balancer
//! decides, each backend counts what it received. Round robin and random weights,
//! least-request and peak-EWMA steering away from a slow endpoint, ring-hash
//! stickiness on a header, a cookie and the client IP, and a route's weighted
//! `backendRefs` (including weight 0 and the all-zero 503).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::Harness;
use futures_util::future::join_all;
use http::{Method, StatusCode};
use meshgate_testkit::{Backend, Behaviour};

const LISTENER: &str = "listeners: [{name: l, address: \"127.0.0.1:0\"}]";

async fn backends(names: &[&str]) -> Vec<Backend> {
    let mut v = Vec::new();
    for n in names {
        v.push(Backend::start(n).await);
    }
    v
}

/// One service `svc` over `endpoints` (backend, weight) with this `loadBalancer`,
/// behind a catch-all route.
async fn balanced(lb: &str, endpoints: &[(&Backend, u32)]) -> Harness {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|(b, w)| format!("{{address: \"{}\", weight: {w}}}", b.addr))
        .collect();
    let eps = eps.join(", ");
    let route = "routes: [{name: r, backendRefs: [{name: svc}]}]";
    let svc = format!("services: [{{name: svc, loadBalancer: {lb}, endpoints: [{eps}]}}]");
    common::start(&format!("{LISTENER}\n{route}\n{svc}\n")).await
}

/// Sends `n` sequential GETs with `headers`; returns how many each backend answered.
async fn tally(h: &Harness, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = h.send(Method::GET, "h", "/", headers, Bytes::new()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        *counts.entry(r.backend()).or_default() += 1;
    }
    counts
}

/// The one backend that answers every request with these headers (10 tries).
async fn sticky(h: &Harness, headers: &[(&str, &str)]) -> String {
    let counts = tally(h, 10, headers).await;
    assert_eq!(
        counts.len(),
        1,
        "{headers:?} moved between backends: {counts:?}"
    );
    counts.into_keys().next().unwrap()
}

fn hits(bs: &[Backend]) -> Vec<usize> {
    bs.iter().map(Backend::hits).collect()
}

#[tokio::test]
async fn round_robin_weights_give_exact_shares() {
    let bs = backends(&["a", "b", "c"]).await;
    let h = balanced(
        "{policy: RoundRobin}",
        &[(&bs[0], 1), (&bs[1], 2), (&bs[2], 3)],
    )
    .await;
    tally(&h, 600, &[]).await;
    // 600 is 100 whole periods of the 6-slot schedule, wherever it starts.
    assert_eq!(hits(&bs), [100, 200, 300]);
}

#[tokio::test]
async fn random_weights_give_statistical_shares() {
    let bs = backends(&["a", "b"]).await;
    let h = balanced("{policy: Random}", &[(&bs[0], 1), (&bs[1], 3)]).await;
    tally(&h, 2000, &[]).await;
    let share = bs[1].hits() as f64 / 2000.0;
    // Expected 0.75; ±0.05 is more than five standard deviations.
    assert!(
        (0.70..0.80).contains(&share),
        "b share {share}, hits {:?}",
        hits(&bs)
    );
    assert_eq!(bs[0].hits() + bs[1].hits(), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_less_to_a_slow_endpoint() {
    let slow = Behaviour {
        delay: Duration::from_millis(200),
        ..Behaviour::default()
    };
    let mut bs = backends(&["fast-1", "fast-2"]).await;
    bs.push(Backend::start_with("slow", slow).await);
    let h = balanced(
        "{policy: LeastRequest}",
        &[(&bs[0], 1), (&bs[1], 1), (&bs[2], 1)],
    )
    .await;
    // 6 waves of 10 concurrent requests, started 5 ms apart within a wave: the fast
    // endpoints have answered before the next one arrives, the slow one has not.
    for _ in 0..6 {
        let wave = (0..10u64).map(|i| {
            let h = &h;
            async move {
                tokio::time::sleep(Duration::from_millis(5 * i)).await;
                h.get("h", "/").await.status
            }
        });
        let statuses = join_all(wave).await;
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
    }
    let counts = hits(&bs);
    assert_eq!(counts.iter().sum::<usize>(), 60);
    // Round robin or random would give it 20 (a third).
    assert!(counts[2] * 4 < 60, "slow endpoint got {counts:?}");
}

#[tokio::test]
async fn peak_ewma_sheds_a_slow_endpoint() {
    let slow = Behaviour {
        delay: Duration::from_millis(50),
        ..Behaviour::default()
    };
    let mut bs = backends(&["fast-1", "fast-2"]).await;
    bs.push(Backend::start_with("slow", slow).await);
    let h = balanced(
        "{policy: PeakEwma}",
        &[(&bs[0], 1), (&bs[1], 1), (&bs[2], 1)],
    )
    .await;
    tally(&h, 20, &[]).await;
    let before = hits(&bs);
    let counts = tally(&h, 200, &[]).await;
    let after = hits(&bs);
    let got: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(got.iter().sum::<usize>(), 200, "{counts:?}");
    assert!(got[2] * 100 < 200 * 15, "slow endpoint got {got:?} of 200");
    // Any two of three include a fast one, and the slow one loses to its fast rival.
    assert!(got[0] >= 40 && got[1] >= 40, "{got:?}");
}

#[tokio::test]
async fn ring_hash_on_a_header_is_sticky_and_spreads_users() {
    let bs = backends(&["a", "b", "c"]).await;
    // The configured name's case does not matter: header names are case-insensitive.
    let lb = "{policy: RingHash, hashOn: {header: X-User}}";
    let h = balanced(lb, &[(&bs[0], 1), (&bs[1], 1), (&bs[2], 1)]).await;
    for u in 0..10 {
        let user = format!("user-{u}");
        let home = sticky(&h, &[("x-user", &user)]).await;
        assert_eq!(sticky(&h, &[("x-user", &user)]).await, home, "{user}");
    }
    let mut spread: HashMap<String, usize> = HashMap::new();
    for u in 100..300 {
        let user = format!("user-{u}");
        let r = h
            .send(Method::GET, "h", "/", &[("x-user", &user)], Bytes::new())
            .await;
        *spread.entry(r.backend()).or_default() += 1;
    }
    for b in ["a", "b", "c"] {
        let n = spread.get(b).copied().unwrap_or(0);
        assert!(n >= 30, "200 users: {spread:?}");
    }
    // Without the header a request is balanced at random, not pinned.
    let unkeyed = tally(&h, 60, &[]).await;
    assert!(unkeyed.len() >= 2, "{unkeyed:?}");
}

#[tokio::test]
async fn ring_hash_on_a_cookie_is_sticky_and_spreads_sessions() {
    let bs = backends(&["a", "b", "c"]).await;
    let lb = "{policy: RingHash, hashOn: {cookie: session}}";
    let h = balanced(lb, &[(&bs[0], 1), (&bs[1], 1), (&bs[2], 1)]).await;
    let mut homes = HashMap::new();
    for s in 0..60 {
        let alone = format!("session=s-{s}");
        let home = sticky(&h, &[("cookie", &alone)]).await;
        // Other cookies around it do not change the key.
        let among = format!("theme=dark; session=s-{s}; lang=en");
        assert_eq!(sticky(&h, &[("cookie", &among)]).await, home, "{among}");
        *homes.entry(home).or_insert(0) += 1;
    }
    assert_eq!(homes.len(), 3, "60 sessions over 3 backends: {homes:?}");
}

#[tokio::test]
async fn ring_hash_on_client_ip_pins_each_address() {
    let bs = backends(&["a", "b", "c"]).await;
    let lb = "{policy: RingHash, hashOn: {clientIp: true}}";
    let h = balanced(lb, &[(&bs[0], 1), (&bs[1], 1), (&bs[2], 1)]).await;
    // Everything from 127.0.0.1 lands on one backend, whatever the headers say.
    for i in 0..10 {
        let xff = format!("198.51.100.{i}");
        let headers = [("x-forwarded-for", xff.as_str()), ("x-user", "u")];
        tally(&h, 3, &headers).await;
    }
    let mut counts = hits(&bs);
    counts.sort_unstable();
    assert_eq!(counts, [0, 0, 30]);
    // Other loopback source addresses are keyed apart (curl binds each one).
    let mut homes = HashMap::new();
    for i in 2..22 {
        let ip = format!("127.0.0.{i}");
        let out = h.curl(&["--interface", &ip, &h.url("/")]).await;
        let name = ["a", "b", "c"]
            .into_iter()
            .find(|n| out.contains(&format!("\"backend\":\"{n}\"")));
        *homes.entry(name.expect("a backend answered")).or_insert(0) += 1;
    }
    assert!(homes.len() >= 2, "20 client addresses: {homes:?}");
}

/// Two services `a` and `b`; routes `/split`, `/blue` and `/off` with these weights.
async fn weighted(bs: &[Backend]) -> Harness {
    let route = |path: &str, wa: u32, wb: u32| {
        let refs = format!("[{{name: a, weight: {wa}}}, {{name: b, weight: {wb}}}]");
        format!(
            "  - {{name: {path}, matches: [{{path: {{value: /{path}}}}}], backendRefs: {refs}}}\n"
        )
    };
    let routes = route("split", 3, 1) + &route("blue", 0, 1) + &route("off", 0, 0);
    let services: String = bs
        .iter()
        .map(|b| common::service(&b.name, &[b.addr]))
        .collect();
    common::start(&format!(
        "{LISTENER}\nroutes:\n{routes}services:\n{services}"
    ))
    .await
}

#[tokio::test]
async fn route_backend_weights_split_traffic_between_services() {
    let bs = backends(&["a", "b"]).await;
    let h = weighted(&bs).await;
    for _ in 0..2000 {
        assert_eq!(h.get("h", "/split").await.status, StatusCode::OK);
    }
    let share = bs[0].hits() as f64 / 2000.0;
    assert!((0.70..0.80).contains(&share), "a share {share}");
    assert_eq!(bs[0].hits() + bs[1].hits(), 2000);

    let before = hits(&bs);
    for _ in 0..200 {
        assert_eq!(h.get("h", "/blue").await.backend(), "b");
    }
    assert_eq!(
        hits(&bs),
        [before[0], before[1] + 200],
        "weight 0 gets nothing"
    );
}

#[tokio::test]
async fn all_zero_weights_answer_503_no_backend() {
    let bs = backends(&["a", "b"]).await;
    let h = weighted(&bs).await;
    let r = h.get("h", "/off").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers["content-type"], "application/json");
    let body = r.json();
    assert_eq!(body["error"], "no_backend");
    assert_eq!(
        body["requestId"],
        r.headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(hits(&bs), [0, 0]);
    let log = h.log_lines(1).await;
    let line = log.iter().find(|l| l["status"] == 503).expect("503 logged");
    assert_eq!(line["reason"], "no_backend", "{line}");
    assert_eq!(line["route"], "off", "{line}");
    assert!(
        line["service"].is_null() && line["upstream"].is_null(),
        "{line}"
    );
}
