//! Checks of `cors` policies: origins in their serialized form (no path), wildcards
//! only as a leading label, regexes that compile, methods and header names as
//! tokens, and the Fetch standard's rule that `*` cannot go with credentials.

use crate::Config;
use crate::model::CorsPolicy;
use crate::validate::Issues;

use super::super::syntax;

/// Checks the settings at `at` (e.g. `policies[3].cors`).
pub(super) fn check(at: &str, p: &CorsPolicy, _config: &Config, issues: &mut Issues) {
    if p.allow_origins.is_empty() && p.allow_origin_regex.is_empty() {
        issues.add(
            format!("{at}.allowOrigins"),
            "set allowOrigins, allowOriginRegex or both (no origin would be allowed)",
        );
    }
    for (i, o) in p.allow_origins.iter().enumerate() {
        let path = format!("{at}.allowOrigins[{i}]");
        if o == "*" {
            if p.allow_credentials {
                issues.add(
                    path,
                    "\"*\" cannot be used with allowCredentials (the Fetch standard forbids it); \
                     list the origins",
                );
            }
        } else if let Some(msg) = origin(o) {
            issues.add(path, msg);
        }
    }
    for (i, re) in p.allow_origin_regex.iter().enumerate() {
        if let Some(msg) = syntax::regex(re) {
            issues.add(format!("{at}.allowOriginRegex[{i}]"), msg);
        }
    }
    for (i, m) in p.allow_methods.iter().enumerate() {
        if m != "*"
            && let Some(msg) = syntax::method(m)
        {
            issues.add(format!("{at}.allowMethods[{i}]"), msg);
        }
    }
    for (field, list) in [
        ("allowHeaders", &p.allow_headers),
        ("exposeHeaders", &p.expose_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            let problem = if h != "*" {
                syntax::header_name(h)
            } else if field == "exposeHeaders" && p.allow_credentials {
                Some(
                    "\"*\" means every header only without allowCredentials; list the headers"
                        .into(),
                )
            } else {
                None
            };
            if let Some(msg) = problem {
                issues.add(format!("{at}.{field}[{i}]"), msg);
            }
        }
    }
}

/// Why `o` is not an allowed-origin entry (`scheme://host[:port]`, the host
/// possibly starting with `*.`), if it is not.
fn origin(o: &str) -> Option<String> {
    let general = || {
        format!(
            "{o:?} is not an origin: expected scheme://host[:port] such as \
             https://app.example.com, a wildcard such as https://*.example.com, or *"
        )
    };
    let Some((scheme, rest)) = o.split_once("://") else {
        return Some(general());
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return Some(general());
    }
    if let Some(slash) = rest.find(['/', '?', '#']) {
        return Some(format!(
            "{o:?} is not an origin: an origin has no path (write {:?})",
            format!("{scheme}://{}", &rest[..slash])
        ));
    }
    let (host, port) = if rest.starts_with('[') {
        match rest.split_once(']') {
            Some((h, p)) => (&rest[..=h.len()], p),
            None => return Some(general()),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, rest.get(h.len()..).unwrap_or(p)),
            None => (rest, ""),
        }
    };
    if let Some(p) = port.strip_prefix(':') {
        if !p.parse::<u16>().is_ok_and(|n| n > 0) {
            return Some(format!("{o:?} is not an origin: bad port {p:?}"));
        }
    } else if !port.is_empty() {
        return Some(general());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.contains('*') {
        return Some(format!(
            "{o:?}: a wildcard is only allowed as the first label (https://*.example.com)"
        ));
    }
    let host_ok = if name.starts_with('[') {
        name.len() > 2
            && name[1..name.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .is_ok()
            && host == name
    } else {
        !name.is_empty()
            && name
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    (!host_ok).then(general)
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn origins() {
        for ok in [
            "https://app.example.com",
            "http://localhost:3000",
            "https://*.example.com",
            "https://*.example.com:8443",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "chrome-extension://abcdef",
        ] {
            assert_eq!(origin(ok), None, "{ok}");
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.*.com",
            "https://*",
            "https://a.example.com:0",
            "https://a.example.com:x",
            "https://",
            "https://a..b",
            "null",
            "https://[zz]",
        ] {
            assert!(origin(bad).is_some(), "{bad}");
        }
    }
}
