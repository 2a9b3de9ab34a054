//! Unit tests of endpoint availability and outlier detection (ejection on
//! consecutive failures and failure rate, ejection length growth and reset, the
//! ejection cap), of picking among available endpoints, and of the circuit
//! breaker's counting.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use meshgate_config as config;
use meshgate_observe::Metrics;
use prometheus_client::metrics::counter::Counter;

use super::{Breaker, ConnectionOverflow, Upstream, is_overflow};
use crate::balance::hash_key;
use crate::rescue::ProxyError;

use super::outlier::{Outcome, Outlier, ejection_ms, within_cap};
use super::state::{EndpointState, ServiceHealth};

fn service(n: usize) -> ServiceHealth {
    let states = (0..n)
        .map(|i| EndpointState::new(format!("10.0.0.{i}:80").into(), None, None))
        .collect();
    ServiceHealth::new("s".into(), states, true, false)
}

fn outlier(yaml_fields: &str) -> Outlier {
    let c: config::OutlierDetection = serde_json::from_str(yaml_fields).expect("outlier settings");
    Outlier::new(&c, Counter::default())
}

#[test]
fn consecutive_5xx_ejects_and_success_resets() {
    let h = service(2);
    let o = outlier(r#"{"consecutive5xx": 3, "baseEjectionTime": "10s"}"#);
    o.record(&h, 0, Outcome::Status5xx);
    o.record(&h, 0, Outcome::Status5xx);
    o.record(&h, 0, Outcome::Success);
    o.record(&h, 0, Outcome::Status5xx);
    o.record(&h, 0, Outcome::Status5xx);
    assert!(!h.is_ejected(0), "the success reset the count");
    o.record(&h, 0, Outcome::LocalFailure);
    assert!(!h.is_ejected(0), "local failures count separately");
    o.record(&h, 0, Outcome::Status5xx);
    assert!(h.is_ejected(0));
    assert!(!h.available(0) && h.available(1));
    assert_eq!(o.ejections.get(), 1);
}

#[test]
fn cap_keeps_all_but_one_of_three_at_fifty_percent() {
    let h = service(3);
    let o = outlier(r#"{"consecutive5xx": 1, "maxEjectionPercent": 50}"#);
    o.record(&h, 0, Outcome::Status5xx);
    o.record(&h, 1, Outcome::Status5xx);
    o.record(&h, 1, Outcome::Status5xx);
    assert!(h.is_ejected(0));
    assert!(!h.is_ejected(1), "a second ejection would pass 50 %");
    assert_eq!(h.ejected.load(Relaxed), 1);
}

#[test]
fn ejections_grow_end_and_start_over() {
    let h = service(2);
    let o = outlier(r#"{"baseEjectionTime": "10s", "maxEjectionTime": "25s"}"#);
    let s = h.state(0);
    let mut now = 1_000_000;
    for expected in [10_000, 20_000, 25_000] {
        assert!(o.eject_at(&h, 0, "test", now));
        assert!(!o.eject_at(&h, 0, "test", now), "already ejected");
        let until = s.ejected_until.load(Relaxed);
        assert_eq!(until - now, expected);
        h.settle(until - 1);
        assert_eq!(h.ejected.load(Relaxed), 1, "not over yet");
        h.settle(until);
        assert_eq!(s.ejected_until.load(Relaxed), 0);
        assert_eq!(h.ejected.load(Relaxed), 0);
        now = until + 1_000;
    }
    // Back for longer than the longest ejection: the multiplier starts over.
    now += 25_000;
    assert!(o.eject_at(&h, 0, "test", now));
    assert_eq!(s.ejected_until.load(Relaxed) - now, 10_000);
    assert_eq!(o.ejections.get(), 4);
}

#[test]
fn failure_rate_is_judged_per_window() {
    let h = service(3);
    let o = outlier(
        r#"{"consecutive5xx": 0, "consecutiveFailures": 0,
            "failureRate": {"thresholdPercent": 50, "minimumRequests": 4, "window": "1s"}}"#,
    );
    // Endpoint 0: 2 of 4 failed (50 %): ejected. Endpoint 1: 3 of 3 failed but
    // too few requests. Endpoint 2: 1 of 4 failed.
    for (i, outcomes) in [(0, "ffss"), (1, "fff"), (2, "fsss")] {
        for c in outcomes.chars() {
            let outcome = if c == 'f' {
                Outcome::LocalFailure
            } else {
                Outcome::Success
            };
            o.record(&h, i, outcome);
        }
    }
    o.judge_window(&h);
    assert!(h.is_ejected(0));
    assert!(!h.is_ejected(1) && !h.is_ejected(2));
    // Counters were reset: a quiet window ejects nobody.
    o.judge_window(&h);
    assert_eq!(h.ejected.load(Relaxed), 1);
}

#[test]
fn ejection_time_grows_linearly_up_to_the_cap() {
    let lengths: Vec<u64> = (1..=6).map(|n| ejection_ms(300, 1000, n)).collect();
    assert_eq!(lengths, [300, 600, 900, 1000, 1000, 1000]);
    assert_eq!(ejection_ms(300, 1000, 0), 300, "0 counts as the first");
    assert_eq!(ejection_ms(u64::MAX / 2, u64::MAX, 3), u64::MAX);
}

#[test]
fn cap_limits_the_ejected_share_and_keeps_one() {
    // 50 % of 3: one may go, two may not.
    assert!(within_cap(1, 3, 50));
    assert!(!within_cap(2, 3, 50));
    // 50 % of 2: exactly half is allowed.
    assert!(within_cap(1, 2, 50));
    // 100 % still leaves one endpoint.
    assert!(within_cap(2, 3, 100));
    assert!(!within_cap(3, 3, 100));
    // A single endpoint is never ejected; 0 % disables ejection.
    assert!(!within_cap(1, 1, 100));
    assert!(!within_cap(1, 10, 0));
    // 10 % of 10 is one endpoint; of 5 it is none.
    assert!(within_cap(1, 10, 10));
    assert!(!within_cap(1, 5, 10));
}

// ---- picking among available endpoints ----

fn upstream(service_yaml: &str) -> Upstream {
    let doc = format!("services:\n{service_yaml}");
    let config = config::parse_str(&doc, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    Upstream::build(&config.services[0], &Arc::new(Metrics::new())).expect("builds")
}

const THREE: &str = "  - name: s
    endpoints: [10.0.0.1:80, 10.0.0.2:80, 10.0.0.3:80]
    healthCheck: {tcp: {}}
";

fn picks(u: &Upstream, hash: Option<u64>, avoid: Option<usize>) -> Vec<usize> {
    (0..300)
        .map(|_| u.pick(hash, avoid).expect("an endpoint"))
        .collect()
}

#[test]
fn unhealthy_endpoints_are_never_picked() {
    for policy in ["RoundRobin", "Random", "LeastRequest", "PeakEwma"] {
        let u = upstream(&format!("{THREE}    loadBalancer: {{policy: {policy}}}\n"));
        assert!(u.health.state(1).set_healthy(false));
        let got = picks(&u, None, None);
        assert!(!got.contains(&1), "{policy}");
        assert!(
            got.contains(&0) && got.contains(&2),
            "{policy}: both others get traffic"
        );
        // Avoiding one of the two left leaves the other.
        assert!(picks(&u, None, Some(0)).iter().all(|&i| i == 2), "{policy}");
        // The only available endpoint is used even when it is the one to avoid.
        u.health.state(2).set_healthy(false);
        assert!(picks(&u, None, Some(0)).iter().all(|&i| i == 0), "{policy}");
        assert!(!u.endpoint_status()[1].healthy);
    }
}

#[test]
fn no_healthy_endpoint_fails_unless_panic_mode() {
    let u = upstream(THREE);
    for i in 0..3 {
        u.health.state(i).set_healthy(false);
    }
    assert_eq!(u.pick(None, None), Err(ProxyError::NoHealthyUpstream));
    let panicky = upstream(&THREE.replace("{tcp: {}}", "{tcp: {}, panicMode: true}"));
    for i in 0..3 {
        panicky.health.state(i).set_healthy(false);
    }
    let got = picks(&panicky, None, None);
    assert!(
        (0..3).all(|i| got.contains(&i)),
        "panic mode spreads over all"
    );
}

#[test]
fn ejection_never_empties_the_healthy_set() {
    let u = upstream(
        "  - name: s
    endpoints: [10.0.0.1:80, 10.0.0.2:80]
    healthCheck: {tcp: {}}
    outlierDetection: {consecutive5xx: 1}
",
    );
    u.record(1, Outcome::Status5xx);
    assert!(u.endpoint_status()[1].ejected);
    assert!(picks(&u, None, None).iter().all(|&i| i == 0));
    // Endpoint 0 goes unhealthy: the ejected but healthy endpoint 1 serves.
    u.health.state(0).set_healthy(false);
    assert!(picks(&u, None, None).iter().all(|&i| i == 1));
}

#[test]
fn ring_hash_keys_move_to_a_steady_substitute_and_come_back() {
    let u = upstream(
        "  - name: s
    endpoints: [10.0.0.1:80, 10.0.0.2:80, 10.0.0.3:80, 10.0.0.4:80]
    loadBalancer: {policy: RingHash, hashOn: {header: x-user}}
    outlierDetection: {consecutive5xx: 1}
",
    );
    let keys: Vec<u64> = (0..200u32).map(|k| hash_key(&k.to_le_bytes())).collect();
    let home: Vec<usize> = keys
        .iter()
        .map(|&k| u.pick(Some(k), None).unwrap())
        .collect();
    let target = home[0];
    u.record(target, Outcome::Status5xx);
    assert!(u.health.is_ejected(target));
    for (&k, &h) in keys.iter().zip(&home) {
        let now = u.pick(Some(k), None).unwrap();
        if h == target {
            assert_ne!(now, target);
            assert_eq!(
                u.pick(Some(k), None).unwrap(),
                now,
                "the same substitute each time"
            );
        } else {
            assert_eq!(now, h, "keys of other endpoints stay put");
        }
    }
    // Back from ejection: every key is home again.
    let until = u.health.state(target).ejected_until.load(Relaxed);
    u.health.settle(until);
    let again: Vec<usize> = keys
        .iter()
        .map(|&k| u.pick(Some(k), None).unwrap())
        .collect();
    assert_eq!(again, home);
}

// ---- circuit breaker ----

#[test]
fn breaker_limits_count_up_and_give_back() {
    let metrics = Metrics::new();
    let limits = config::CircuitBreaker {
        max_requests: 2,
        max_pending_requests: 1,
        max_retries: 1,
        ..Default::default()
    };
    let (b, conns) = Breaker::new(&limits, &metrics, &"s".into());
    let first = b.request().expect("1 of 2");
    let second = b.request().expect("2 of 2");
    assert_eq!(b.request().unwrap_err(), ProxyError::Overflow);
    drop(first);
    let third = b.request().expect("a slot came back");
    assert_eq!(b.requests.current(), 2);
    drop((second, third));
    assert_eq!(b.requests.current(), 0);

    // A refused slot must not give back one it never took.
    let pending = b.pending().expect("1 of 1");
    for _ in 0..3 {
        assert_eq!(b.pending().unwrap_err(), ProxyError::Overflow);
    }
    drop(pending);
    let pending = b.pending().expect("free again");
    drop(pending);
    let retry = b.retry().expect("1 of 1");
    assert!(b.retry().is_none());
    assert!(b.retry().is_none());
    drop(retry);
    assert_eq!(conns.current(), 0);

    let text = metrics.encode();
    for (kind, n) in [
        ("max_requests", 1),
        ("max_pending_requests", 3),
        ("max_retries", 2),
    ] {
        let series =
            format!(r#"meshgate_circuit_breaker_overflows_total{{service="s",kind="{kind}"}} {n}"#);
        assert!(text.contains(&series), "{series} in\n{text}");
    }
}

#[test]
fn overflow_is_found_in_an_error_chain() {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] ConnectionOverflow);
    assert!(is_overflow(&Outer(ConnectionOverflow)));
    assert!(!is_overflow(&std::io::Error::other("refused")));
}
