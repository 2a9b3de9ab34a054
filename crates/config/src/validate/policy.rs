//! Checks of `policies:` and of the names listeners and routes use to refer to them.

use std::net::IpAddr;

use crate::Config;
use crate::model::PolicyType;

use super::Issues;

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
        let present = [
            (PolicyType::IpAccess, p.ip_access.is_some()),
            (PolicyType::RequestLimits, p.request_limits.is_some()),
        ];
        for (kind, set) in present {
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
