//! Route checks: hostnames, listener references, matches (paths, methods, headers,
//! query parameters), backend references, timeouts and retry policy. Filters are
//! checked in `route_filter`.

use super::names::Known;
use super::syntax;
use super::{Issues, route_filter};
use crate::{FilterType, HeaderMatch, PathMatchType, Retry, Route, RouteMatch, StringMatchType};

/// Most retries after the first try.
const MAX_ATTEMPTS: u32 = 10;
/// Largest backend weight (the Gateway API's limit).
const MAX_BACKEND_WEIGHT: u32 = 1_000_000;

/// Checks one route at `base` (`routes[i]`).
pub(super) fn check(r: &Route, base: &str, known: &Known<'_>, issues: &mut Issues) {
    for (j, h) in r.hostnames.iter().enumerate() {
        if let Some(msg) = syntax::route_hostname(h) {
            issues.add(format!("{base}.hostnames[{j}]"), msg);
        }
    }
    for (j, l) in r.listeners.iter().enumerate() {
        if let Some(msg) = known.listener(l) {
            issues.add(format!("{base}.listeners[{j}]"), msg);
        }
    }
    for (j, m) in r.matches.iter().enumerate() {
        check_match(m, &format!("{base}.matches[{j}]"), issues);
    }
    route_filter::check_all(r, base, issues);
    check_backends(r, base, known, issues);
    if let (Some(total), Some(per_try)) = (r.timeouts.request, r.timeouts.backend_request)
        && per_try > total
    {
        issues.add(
            format!("{base}.timeouts.backendRequest"),
            format!("must not exceed timeouts.request ({total}), got {per_try}"),
        );
    }
    if r.timeouts.upgrade_idle.is_some_and(|d| d.get().is_zero()) {
        issues.add(
            format!("{base}.timeouts.upgradeIdle"),
            "must be greater than 0",
        );
    }
    if let Some(retry) = &r.retry {
        check_retry(retry, &format!("{base}.retry"), issues);
    }
}

fn check_match(m: &RouteMatch, base: &str, issues: &mut Issues) {
    if let Some(p) = &m.path {
        let problem = match p.kind {
            PathMatchType::Exact | PathMatchType::PathPrefix => syntax::path(&p.value),
            PathMatchType::RegularExpression => syntax::regex(&p.value),
        };
        if let Some(msg) = problem {
            issues.add(format!("{base}.path.value"), msg);
        }
    }
    if let Some(msg) = m.method.as_deref().and_then(syntax::method) {
        issues.add(format!("{base}.method"), msg);
    }
    for (k, h) in m.headers.iter().enumerate() {
        let at = format!("{base}.headers[{k}]");
        if let Some(msg) = syntax::header_name(&h.name) {
            issues.add(format!("{at}.name"), msg);
        }
        check_value_regex(h, &at, issues);
    }
    for (k, q) in m.query_params.iter().enumerate() {
        let at = format!("{base}.queryParams[{k}]");
        if q.name.is_empty() {
            issues.add(
                format!("{at}.name"),
                "must not be empty: expected a query parameter name",
            );
        }
        check_value_regex(q, &at, issues);
    }
}

fn check_value_regex(m: &HeaderMatch, at: &str, issues: &mut Issues) {
    if m.kind == StringMatchType::RegularExpression
        && let Some(msg) = syntax::regex(&m.value)
    {
        issues.add(format!("{at}.value"), msg);
    }
}

fn check_backends(r: &Route, base: &str, known: &Known<'_>, issues: &mut Issues) {
    let answers = r.filters.iter().any(|f| {
        matches!(
            f.kind,
            FilterType::RequestRedirect | FilterType::DirectResponse
        )
    });
    if r.backend_refs.is_empty() && !answers {
        issues.add(
            format!("{base}.backendRefs"),
            "required unless a RequestRedirect or DirectResponse filter answers the request: \
             list at least one service to forward to",
        );
    }
    for (j, b) in r.backend_refs.iter().enumerate() {
        if let Some(msg) = known.service(&b.name) {
            issues.add(format!("{base}.backendRefs[{j}].name"), msg);
        }
        if b.weight > MAX_BACKEND_WEIGHT {
            issues.add(
                format!("{base}.backendRefs[{j}].weight"),
                format!("must be at most {MAX_BACKEND_WEIGHT} (got {})", b.weight),
            );
        }
    }
    if let Some(h) = &r.backend_affinity {
        super::service::check_hash_on(h, &format!("{base}.backendAffinity"), issues);
    }
}

fn check_retry(retry: &Retry, base: &str, issues: &mut Issues) {
    if retry.attempts > MAX_ATTEMPTS {
        issues.add(
            format!("{base}.attempts"),
            format!(
                "must be at most {MAX_ATTEMPTS} retries after the first try (got {})",
                retry.attempts
            ),
        );
    }
    let b = &retry.backoff;
    if b.base > b.max {
        issues.add(
            format!("{base}.backoff.base"),
            format!("must not exceed backoff.max ({}), got {}", b.max, b.base),
        );
    }
}
