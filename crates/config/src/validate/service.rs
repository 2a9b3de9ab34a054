//! Service checks: endpoints (address syntax, weights, duplicates), load balancer
//! settings (`hashOn` exactly when `RingHash`), pool, retry budget, timeouts, and
//! the resilience settings (health checks, outlier detection, circuit breaker).

use super::Issues;
use super::syntax;
use crate::{
    CircuitBreaker, GrpcCheck, HashOn, HealthCheck, LbPolicy, LoadBalancer, OutlierDetection,
    Service,
};

/// Largest endpoint weight.
const MAX_ENDPOINT_WEIGHT: u32 = 10_000;
/// Largest idle pool per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 100_000;

/// Checks one service at `base` (`services[i]`).
pub(super) fn check(s: &Service, base: &str, issues: &mut Issues) {
    // With discovery, the endpoints come from the control plane.
    if s.endpoints.is_empty() && s.discovery.is_none() {
        issues.add(
            format!("{base}.endpoints"),
            "must list at least one endpoint",
        );
    }
    for (j, e) in s.endpoints.iter().enumerate() {
        let at = format!("{base}.endpoints[{j}]");
        if let Some(msg) = syntax::host_port(&e.address) {
            issues.add(format!("{at}.address"), msg);
        } else if let Some(first) = s.endpoints[..j].iter().position(|o| o.address == e.address) {
            issues.add(
                format!("{at}.address"),
                format!("duplicate endpoint {:?} (first at endpoints[{first}]); raise its weight instead", e.address),
            );
        }
        if !(1..=MAX_ENDPOINT_WEIGHT).contains(&e.weight) {
            issues.add(
                format!("{at}.weight"),
                format!("must be 1-{MAX_ENDPOINT_WEIGHT} (got {})", e.weight),
            );
        }
    }
    check_load_balancer(&s.load_balancer, &format!("{base}.loadBalancer"), issues);
    if s.connect_timeout.get().is_zero() {
        issues.add(
            format!("{base}.connectTimeout"),
            "must be greater than 0, e.g. 1s",
        );
    }
    if s.pool.max_idle_per_endpoint > MAX_IDLE_PER_ENDPOINT {
        issues.add(
            format!("{base}.pool.maxIdlePerEndpoint"),
            format!(
                "must be at most {MAX_IDLE_PER_ENDPOINT} (got {})",
                s.pool.max_idle_per_endpoint
            ),
        );
    }
    let budget = &s.retry_budget;
    if !(0.0..=1000.0).contains(&budget.percent) {
        issues.add(
            format!("{base}.retryBudget.percent"),
            format!("must be 0-1000 (got {})", budget.percent),
        );
    }
    if budget.window.get().is_zero() {
        issues.add(
            format!("{base}.retryBudget.window"),
            "must be greater than 0, e.g. 10s",
        );
    }
    if let Some(h) = &s.health_check {
        check_health(h, &format!("{base}.healthCheck"), issues);
        if let Some(g) = &h.grpc {
            check_grpc_health(g, &format!("{base}.healthCheck.grpc"), issues);
        }
    }
    if let Some(o) = &s.outlier_detection {
        check_outlier(o, &format!("{base}.outlierDetection"), issues);
    }
    check_breaker(
        &s.circuit_breaker,
        &format!("{base}.circuitBreaker"),
        issues,
    );
}

/// The gRPC health check: an `authority` that can be sent. (Over h2c, or over
/// TLS with the service's `tls` settings.)
fn check_grpc_health(g: &GrpcCheck, base: &str, issues: &mut Issues) {
    if let Some(a) = &g.authority
        && (a.is_empty()
            || !a
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(c)))
    {
        issues.add(
            format!("{base}.authority"),
            format!("invalid authority {a:?}: expected host or host:port"),
        );
    }
}

fn check_health(h: &HealthCheck, base: &str, issues: &mut Issues) {
    match (&h.http, &h.tcp, &h.grpc) {
        (Some(_), None, None) | (None, Some(_), None) | (None, None, Some(_)) => {}
        (http, tcp, Some(_)) => {
            let mut got = vec!["grpc"];
            if tcp.is_some() {
                got.insert(0, "tcp");
            }
            if http.is_some() {
                got.insert(0, "http");
            }
            issues.add(
                base,
                format!(
                    "set exactly one of http, tcp or grpc (got {})",
                    got.join(" and ")
                ),
            );
        }
        (http, _, None) => {
            let got = if http.is_some() {
                "http and tcp"
            } else {
                "none"
            };
            issues.add(base, format!("set exactly one of http or tcp (got {got})"));
        }
    }
    if h.interval.get().is_zero() {
        issues.add(
            format!("{base}.interval"),
            "must be greater than 0, e.g. 5s",
        );
    }
    if h.timeout.get().is_zero() {
        issues.add(format!("{base}.timeout"), "must be greater than 0, e.g. 1s");
    } else if h.timeout > h.interval {
        issues.add(
            format!("{base}.timeout"),
            format!(
                "must not exceed interval ({}), got {}",
                h.interval, h.timeout
            ),
        );
    }
    for (field, n) in [
        ("healthyThreshold", h.healthy_threshold),
        ("unhealthyThreshold", h.unhealthy_threshold),
    ] {
        if n == 0 {
            issues.add(format!("{base}.{field}"), "must be at least 1 (got 0)");
        }
    }
    let Some(http) = &h.http else { return };
    let p = &http.path;
    if !p.starts_with('/') {
        issues.add(
            format!("{base}.http.path"),
            format!("invalid path {p:?}: must start with \"/\""),
        );
    } else if p.contains(|c: char| c.is_whitespace() || c.is_control() || c == '#') {
        issues.add(
            format!("{base}.http.path"),
            format!("invalid path {p:?}: must not contain \"#\", whitespace or control characters"),
        );
    }
    if let Some(host) = &http.host {
        let msg = if host.trim().is_empty() {
            Some("must not be empty: omit it to send the endpoint's host:port".to_owned())
        } else {
            syntax::header_value(host)
        };
        if let Some(msg) = msg {
            issues.add(format!("{base}.http.host"), msg);
        }
    }
    for (i, &code) in http.expected_statuses.iter().enumerate() {
        if !(100..=599).contains(&code) {
            issues.add(
                format!("{base}.http.expectedStatuses[{i}]"),
                format!("must be an HTTP status 100-599 (got {code})"),
            );
        }
    }
}

fn check_outlier(o: &OutlierDetection, base: &str, issues: &mut Issues) {
    if let Some(rate) = &o.failure_rate {
        if !(1..=100).contains(&rate.threshold_percent) {
            issues.add(
                format!("{base}.failureRate.thresholdPercent"),
                format!("must be 1-100 (got {})", rate.threshold_percent),
            );
        }
        if rate.window.get().is_zero() {
            issues.add(
                format!("{base}.failureRate.window"),
                "must be greater than 0, e.g. 10s",
            );
        }
    }
    if o.base_ejection_time.get().is_zero() {
        issues.add(
            format!("{base}.baseEjectionTime"),
            "must be greater than 0, e.g. 30s",
        );
    } else if o.base_ejection_time > o.max_ejection_time {
        issues.add(
            format!("{base}.baseEjectionTime"),
            format!(
                "must not exceed maxEjectionTime ({}), got {}",
                o.max_ejection_time, o.base_ejection_time
            ),
        );
    }
    if o.max_ejection_percent > 100 {
        issues.add(
            format!("{base}.maxEjectionPercent"),
            format!("must be 0-100 (got {})", o.max_ejection_percent),
        );
    }
}

/// `maxRetries` may be 0 (no retries for this service); the other limits may not,
/// since 0 would refuse every request.
fn check_breaker(b: &CircuitBreaker, base: &str, issues: &mut Issues) {
    for (field, n) in [
        ("maxConnections", b.max_connections),
        ("maxPendingRequests", b.max_pending_requests),
        ("maxRequests", b.max_requests),
    ] {
        if n == 0 {
            issues.add(
                format!("{base}.{field}"),
                "must be at least 1 (got 0): 0 would refuse every request",
            );
        }
    }
}

fn check_load_balancer(lb: &LoadBalancer, base: &str, issues: &mut Issues) {
    let at = format!("{base}.hashOn");
    match (lb.policy, &lb.hash_on) {
        (LbPolicy::RingHash, None) => {
            issues.add(
                at,
                "required when policy is RingHash: set one of header, cookie or clientIp",
            );
        }
        (LbPolicy::RingHash, Some(h)) => check_hash_on(h, &at, issues),
        (other, Some(_)) => {
            issues.add(
                at,
                format!("only allowed when policy is RingHash (policy is {other:?})"),
            );
        }
        (_, None) => {}
    }
}

pub(super) fn check_hash_on(h: &HashOn, at: &str, issues: &mut Issues) {
    let set: Vec<&str> = [
        ("header", h.header.is_some()),
        ("cookie", h.cookie.is_some()),
        ("clientIp", h.client_ip),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    if set.len() != 1 {
        let got = if set.is_empty() {
            "none".to_owned()
        } else {
            set.join(" and ")
        };
        issues.add(
            at,
            format!("set exactly one of header, cookie or clientIp (got {got})"),
        );
    }
    if let Some(msg) = h.header.as_deref().and_then(syntax::header_name) {
        issues.add(format!("{at}.header"), msg);
    }
    if let Some(c) = h.cookie.as_deref()
        && syntax::header_name(c).is_some()
    {
        issues.add(
            format!("{at}.cookie"),
            format!("invalid cookie name {c:?}: expected a token (RFC 6265)"),
        );
    }
}
