//! Checks of `policies:` and of the names listeners and routes use to refer to them.

mod authorize;
mod basic_auth;
mod client_cert;
mod cors;
mod ext_authz;
mod jwt;
mod oidc;
mod order;
mod rate_limit;

use std::net::IpAddr;

use crate::Config;
use crate::model::PolicyType;

use super::Issues;

pub(crate) use order::warnings;

pub(super) fn check(config: &Config, issues: &mut Issues) {
    for (i, p) in config.policies.iter().enumerate() {
        let at = format!("policies[{i}]");
        if p.name.trim().is_empty() {
            issues.add(format!("{at}.name"), "must not be empty");
        } else if let Some(first) = config.policies[..i].iter().position(|o| o.name == p.name) {
            issues.add(
                format!("{at}.name"),
                format!(
                    "duplicate policy name {:?} (first at policies[{first}])",
                    p.name
                ),
            );
        }
        for kind in PolicyType::ALL {
            let set = p.has_settings(kind);
            if kind == p.kind && !set {
                issues.add(
                    format!("{at}.{}", kind.field()),
                    format!("required when type is {:?}", p.kind),
                );
            } else if kind != p.kind && set {
                issues.add(
                    format!("{at}.{}", kind.field()),
                    format!("not allowed when type is {:?}", p.kind),
                );
            }
        }
        if let Some(b) = &p.basic_auth {
            basic_auth::check(&format!("{at}.basicAuth"), b, config, issues);
        }
        if let Some(j) = &p.jwt {
            jwt::check(&format!("{at}.jwt"), j, config, issues);
        }
        if let Some(o) = &p.oidc {
            oidc::check(&format!("{at}.oidc"), o, config, issues);
        }
        if let Some(e) = &p.ext_authz {
            ext_authz::check(&format!("{at}.extAuthz"), e, config, issues);
        }
        if let Some(a) = &p.authorize {
            authorize::check(&format!("{at}.authorize"), a, config, issues);
        }
        if let Some(r) = &p.rate_limit {
            rate_limit::check(&format!("{at}.rateLimit"), r, config, issues);
        }
        if let Some(c) = &p.cors {
            cors::check(&format!("{at}.cors"), c, config, issues);
        }
        if let Some(c) = &p.client_cert {
            client_cert::check(&format!("{at}.clientCert"), c, config, issues);
        }
        if let Some(k) = &p.api_key {
            for (field, name) in [
                ("header", &k.header),
                ("consumerHeader", &k.consumer_header),
                ("groupsHeader", &k.groups_header),
            ] {
                if !is_token(name) {
                    issues.add(
                        format!("{at}.apiKey.{field}"),
                        format!("{name:?} is not a valid header name"),
                    );
                }
            }
            if k.query_param.as_deref() == Some("") {
                issues.add(format!("{at}.apiKey.queryParam"), "must not be empty");
            }
        }
        if let Some(ip) = &p.ip_access {
            for (field, list) in [("allow", &ip.allow), ("deny", &ip.deny)] {
                for (j, net) in list.iter().enumerate() {
                    if net.parse::<ipnet::IpNet>().is_err() && net.parse::<IpAddr>().is_err() {
                        issues.add(
                            format!("{at}.ipAccess.{field}[{j}]"),
                            format!(
                                "{net:?} is not a CIDR (10.0.0.0/8, 2001:db8::/32) or an IP address"
                            ),
                        );
                    }
                }
            }
            if ip.allow.is_empty() && ip.deny.is_empty() {
                issues.add(format!("{at}.ipAccess"), "set allow, deny or both");
            }
        }
        if let Some(l) = &p.request_limits {
            let zero = |v: Option<u64>| v == Some(0);
            for (field, v) in [
                ("maxUriBytes", l.max_uri_bytes.map(u64::from)),
                ("maxHeaderBytes", l.max_header_bytes.map(u64::from)),
                ("maxBodyBytes", l.max_body_bytes),
            ] {
                if zero(v) {
                    issues.add(format!("{at}.requestLimits.{field}"), "must be at least 1");
                }
            }
            if l.max_uri_bytes.is_none()
                && l.max_header_bytes.is_none()
                && l.max_body_bytes.is_none()
            {
                issues.add(
                    format!("{at}.requestLimits"),
                    "set at least one of maxUriBytes, maxHeaderBytes, maxBodyBytes",
                );
            }
        }
    }
    check_consumers(config, issues);
    let known = |n: &String| config.policies.iter().any(|p| &p.name == n);
    for (i, l) in config.listeners.iter().enumerate() {
        for (j, n) in l.policies.iter().enumerate() {
            if !known(n) {
                issues.add(
                    format!("listeners[{i}].policies[{j}]"),
                    format!("unknown policy {n:?}"),
                );
            }
        }
    }
    for (i, r) in config.routes.iter().enumerate() {
        for (j, n) in r.policies.iter().enumerate() {
            if !known(n) {
                issues.add(
                    format!("routes[{i}].policies[{j}]"),
                    format!("unknown policy {n:?}"),
                );
            }
        }
    }
}

fn check_consumers(config: &Config, issues: &mut Issues) {
    let mut seen_keys: Vec<(&str, String)> = Vec::new();
    for (i, c) in config.consumers.iter().enumerate() {
        let at = format!("consumers[{i}]");
        if c.name.trim().is_empty() {
            issues.add(format!("{at}.name"), "must not be empty");
        } else if let Some(first) = config.consumers[..i].iter().position(|o| o.name == c.name) {
            issues.add(
                format!("{at}.name"),
                format!(
                    "duplicate consumer name {:?} (first at consumers[{first}])",
                    c.name
                ),
            );
        }
        if let Some(b) = &c.basic_auth {
            basic_auth::check_credential(&format!("{at}.basicAuth"), b, issues);
        }
        for (j, key) in c.api_keys.iter().enumerate() {
            let path = format!("{at}.apiKeys[{j}]");
            let hex = key
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if hex.is_none() {
                issues.add(path, "expected sha256:<64 hex digits>, the hash printed by `meshgate keys generate` (never the key itself)");
            } else if let Some((_, first)) =
                seen_keys.iter().find(|(k, _)| k.eq_ignore_ascii_case(key))
            {
                issues.add(
                    path,
                    format!("the same key hash is already used at {first}"),
                );
            } else {
                seen_keys.push((key, path));
            }
        }
    }
}

/// RFC 9110 token characters (header names).
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
