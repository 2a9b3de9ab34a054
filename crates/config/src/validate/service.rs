//! Service checks: endpoints (address syntax, weights, duplicates), load balancer
//! settings (`hashOn` exactly when `RingHash`), pool, retry budget, timeouts.

use super::Issues;
use super::syntax;
use crate::{HashOn, LbPolicy, LoadBalancer, Service};

/// Largest endpoint weight.
const MAX_ENDPOINT_WEIGHT: u32 = 10_000;
/// Largest idle pool per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 100_000;

/// Checks one service at `base` (`services[i]`).
pub(super) fn check(s: &Service, base: &str, issues: &mut Issues) {
    if s.endpoints.is_empty() {
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

fn check_hash_on(h: &HashOn, at: &str, issues: &mut Issues) {
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
