//! Checks of `rateLimit` policies: a quota that can be enforced (at least one
//! request, a window the token interval fits in), the key's companion settings
//! (`header` only with `key: header`, `trustedProxies` only with `key: clientIp`),
//! and a usable Redis address, timeout and batch.

use std::net::IpAddr;

use crate::Config;
use crate::model::{RateLimitKey, RateLimitPolicy};
use crate::validate::Issues;

use super::is_token;

/// Checks the settings at `at` (e.g. `policies[3].rateLimit`).
pub(super) fn check(at: &str, p: &RateLimitPolicy, _config: &Config, issues: &mut Issues) {
    match (p.key, &p.header) {
        (RateLimitKey::Header, None) => {
            issues.add(format!("{at}.header"), "required when key is header");
        }
        (RateLimitKey::Header, Some(h)) if !is_token(h) => {
            issues.add(
                format!("{at}.header"),
                format!("{h:?} is not a valid header name"),
            );
        }
        (RateLimitKey::Header, Some(_)) | (_, None) => {}
        (_, Some(_)) => {
            issues.add(format!("{at}.header"), "only used when key is header");
        }
    }
    if p.requests == 0 {
        issues.add(format!("{at}.requests"), "must be at least 1");
    }
    if p.per.get().is_zero() {
        issues.add(format!("{at}.per"), "must be longer than 0s");
    } else if p.requests > 0 && p.per.get() / p.requests < std::time::Duration::from_micros(1) {
        issues.add(
            format!("{at}.per"),
            format!(
                "{} requests per {} is more than one per microsecond; use a longer window",
                p.requests, p.per
            ),
        );
    }
    if p.burst == Some(0) {
        issues.add(format!("{at}.burst"), "must be at least 1");
    }
    if !p.trusted_proxies.is_empty() && p.key != RateLimitKey::ClientIp {
        issues.add(
            format!("{at}.trustedProxies"),
            "only used when key is clientIp",
        );
    }
    for (j, net) in p.trusted_proxies.iter().enumerate() {
        if net.parse::<ipnet::IpNet>().is_err() && net.parse::<IpAddr>().is_err() {
            issues.add(
                format!("{at}.trustedProxies[{j}]"),
                format!("{net:?} is not a CIDR (10.0.0.0/8, 2001:db8::/32) or an IP address"),
            );
        }
    }
    if let Some(r) = &p.redis {
        let at = format!("{at}.redis");
        check_url(&format!("{at}.url"), &r.url, issues);
        if r.timeout.get().is_zero() {
            issues.add(format!("{at}.timeout"), "must be longer than 0s");
        }
        let burst = p.burst_or_requests();
        match r.batch {
            Some(0) => issues.add(format!("{at}.batch"), "must be at least 1"),
            Some(b) if burst > 0 && b > burst => issues.add(
                format!("{at}.batch"),
                format!("{b} is larger than the bucket ({burst} requests)"),
            ),
            _ => {}
        }
    }
}

/// `redis://[user:password@]host[:port][/db]`; TLS (`rediss://`) is not built in yet.
fn check_url(at: &str, url: &str, issues: &mut Issues) {
    if url.starts_with("rediss://") {
        issues.add(
            at,
            "TLS to Redis (rediss://) is not supported yet; use redis://",
        );
        return;
    }
    let Some(rest) = url.strip_prefix("redis://") else {
        issues.add(
            at,
            format!("{url:?} is not a Redis URL (redis://host:port[/db])"),
        );
        return;
    };
    let rest = rest.split('?').next().unwrap_or_default();
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match host_port.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:6379`.
        Some(v6) => v6.split_once(']').unwrap_or(("", "")),
        None => match host_port.split_once(':') {
            Some((h, p)) => (h, p),
            None => (host_port, ""),
        },
    };
    let port = port.strip_prefix(':').unwrap_or(port);
    let port_ok = port.is_empty() || port.parse::<u16>().is_ok();
    if host.is_empty() || !port_ok {
        issues.add(
            at,
            format!("{url:?} is not a Redis URL (redis://host:port[/db])"),
        );
        return;
    }
    let db = rest[authority.len()..].trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        issues.add(
            at,
            format!("{db:?} is not a Redis database number (redis://host:port/0)"),
        );
    }
}
