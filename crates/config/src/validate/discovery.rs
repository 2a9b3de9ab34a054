//! Checks of `services[].discovery`: exactly one source, a resolvable DNS name,
//! `port` exactly when the record type needs one, sane intervals; and the
//! warning that a standalone `meshgate run` does not discover.

use super::Issues;
use crate::{Config, Discovery, DnsDiscovery, DnsRecordType};

/// Checks the discovery settings of a service at `base` (`services[i]`).
pub(super) fn check(d: &Discovery, base: &str, issues: &mut Issues) {
    let at = format!("{base}.discovery");
    match (&d.registry, &d.dns) {
        (Some(_), None) => {}
        (None, Some(dns)) => check_dns(dns, &format!("{at}.dns"), issues),
        (Some(_), Some(_)) => issues.add(
            at,
            "set exactly one of registry or dns (got registry and dns)",
        ),
        (None, None) => issues.add(at, "set exactly one of registry or dns (got none)"),
    }
}

fn check_dns(dns: &DnsDiscovery, at: &str, issues: &mut Issues) {
    if let Some(reason) = name_problem(&dns.name) {
        issues.add(
            format!("{at}.name"),
            format!(
                "invalid DNS name {:?}: {reason}; e.g. orders.internal or _http._tcp.orders.internal",
                dns.name
            ),
        );
    }
    match (dns.record_type, dns.port) {
        (DnsRecordType::SRV, Some(_)) => issues.add(
            format!("{at}.port"),
            "not allowed when type is SRV: each SRV record carries its port",
        ),
        (t @ (DnsRecordType::A | DnsRecordType::AAAA), None) => issues.add(
            at,
            format!("port is required when type is {t:?}, e.g. port: 8080"),
        ),
        (_, Some(0)) => issues.add(format!("{at}.port"), "must be 1-65535 (got 0)"),
        _ => {}
    }
    if dns.refresh.get().is_zero() {
        issues.add(format!("{at}.refresh"), "must be greater than 0, e.g. 5s");
    }
    if dns.max_ttl.get().is_zero() {
        issues.add(format!("{at}.maxTtl"), "must be greater than 0, e.g. 60s");
    } else if dns.refresh > dns.max_ttl {
        issues.add(
            format!("{at}.refresh"),
            format!(
                "must not exceed maxTtl ({}), got {}",
                dns.max_ttl, dns.refresh
            ),
        );
    }
}

/// Why `name` is not a DNS name to query, if it is not: labels of letters, digits
/// and inner `-`, optionally starting with `_` (SRV's `_service._proto`), with an
/// optional trailing `.`.
fn name_problem(name: &str) -> Option<String> {
    let relative = name.strip_suffix('.').unwrap_or(name);
    if relative.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if name.len() > 253 {
        return Some(format!("longer than 253 characters ({})", name.len()));
    }
    for label in relative.split('.') {
        let body = label.strip_prefix('_').unwrap_or(label);
        if label.is_empty() {
            return Some("empty label (leading or doubled \".\")".to_owned());
        }
        if label.len() > 63 {
            return Some(format!("label {label:?} is longer than 63 characters"));
        }
        if body.is_empty() || !body.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Some(format!(
                "label {label:?} may only contain letters, digits and \"-\" (and a leading \"_\")"
            ));
        }
        if body.starts_with('-') || body.ends_with('-') {
            return Some(format!("label {label:?} must not start or end with \"-\""));
        }
    }
    None
}

/// A standalone gateway (`meshgate run`) has no control plane to discover for it:
/// say so for every service that asks for discovery.
pub(super) fn warnings(config: &Config, issues: &mut Issues) {
    for (i, s) in config.services.iter().enumerate() {
        if s.discovery.is_none() {
            continue;
        }
        let serves = if s.endpoints.is_empty() {
            "no endpoints: requests to it get 503"
        } else {
            "only its static endpoints"
        };
        issues.add(
            format!("services[{i}].discovery"),
            format!(
                "service {:?}: discovery is done by a control plane (meshgate control, gateways with --control); \
                 a standalone gateway (meshgate run) ignores it and serves {serves}",
                s.name
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::name_problem;

    #[test]
    fn names() {
        for ok in [
            "a",
            "orders.internal",
            "orders.internal.",
            "_http._tcp.x.y",
            "a-b.c1",
        ] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            (".", "empty"),
            ("a..b", "empty label"),
            (".a", "empty label"),
            ("a b", "may only contain"),
            ("_", "may only contain"),
            ("a_b", "may only contain"),
            ("-a", "start or end"),
            ("a:80", "may only contain"),
        ] {
            let got = name_problem(bad).unwrap_or_default();
            assert!(got.contains(why), "{bad:?}: {got}");
        }
        assert!(name_problem(&"a".repeat(64)).unwrap().contains("63"));
        assert!(name_problem(&"a.".repeat(130)).unwrap().contains("253"));
    }
}
