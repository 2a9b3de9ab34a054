//! Checks of `extAuthz` policies: a usable `http://` URL, a timeout, header names.

use crate::Config;
use crate::model::ExtAuthzPolicy;
use crate::validate::Issues;

use super::is_token;

/// Checks the settings at `at` (e.g. `policies[3].extAuthz`).
pub(super) fn check(at: &str, p: &ExtAuthzPolicy, _config: &Config, issues: &mut Issues) {
    if let Some(problem) = http_url_problem(&p.url) {
        issues.add(format!("{at}.url"), problem);
    }
    if p.timeout.get().is_zero() {
        issues.add(format!("{at}.timeout"), "must be more than 0ms");
    }
    for (field, list) in [
        ("allowedHeaders", &p.allowed_headers),
        ("headersToUpstream", &p.headers_to_upstream),
        ("headersToClient", &p.headers_to_client),
    ] {
        for (i, name) in list.iter().enumerate() {
            if !is_token(name) {
                issues.add(
                    format!("{at}.{field}[{i}]"),
                    format!("{name:?} is not a valid header name"),
                );
            }
        }
    }
    for (field, name) in [
        ("consumerFrom", &p.consumer_from),
        ("groupsFrom", &p.groups_from),
    ] {
        if let Some(name) = name
            && !is_token(name)
        {
            issues.add(
                format!("{at}.{field}"),
                format!("{name:?} is not a valid header name"),
            );
        }
    }
    if p.groups_from.is_some() && p.consumer_from.is_none() {
        issues.add(
            format!("{at}.groupsFrom"),
            "needs consumerFrom (groups belong to a named consumer)",
        );
    }
}

/// Why `url` is not an `http://host[:port][/path]` URL the gateway can call, if it is not.
pub(super) fn http_url_problem(url: &str) -> Option<String> {
    if url.starts_with("https://") {
        return Some(format!(
            "{url:?}: https:// is not supported yet (the gateway's TLS client comes with issue 5); use http://"
        ));
    }
    let valid = url.strip_prefix("http://").is_some_and(|rest| {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host_ok = !authority.is_empty()
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
        // Visible ASCII only, and no query or fragment: the request path is appended.
        let path_ok = path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
        host_ok && path_ok
    });
    (!valid).then(|| format!("{url:?} is not an http://host[:port][/path] URL"))
}
