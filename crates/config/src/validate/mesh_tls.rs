//! Checks of `listeners[].mesh` (only on `HTTP` and `TCP` listeners, not with
//! `httpsRedirect`; `allowedPeers` patterns) and `services[].mesh` (the expected
//! SPIFFE ID; not with `tls`). Whether the process has a workload identity is
//! checked when the config is applied, not here.

use crate::model::{Listener, ListenerMesh, ListenerProtocol, Service, ServiceMesh};

use super::Issues;

/// Checks `l.mesh` of the listener at `base` (e.g. `listeners[0]`).
pub(super) fn check_listener(base: &str, l: &Listener, m: &ListenerMesh, issues: &mut Issues) {
    let at = format!("{base}.mesh");
    if !matches!(l.protocol, ListenerProtocol::HTTP | ListenerProtocol::TCP) {
        issues.add(
            &at,
            format!(
                "only allowed when protocol is HTTP or TCP (protocol is {:?}): a mesh listener \
                 terminates mTLS itself, with the workload identity",
                l.protocol
            ),
        );
    }
    if l.https_redirect.is_some() {
        issues.add(
            &at,
            "not allowed with httpsRedirect: mesh clients are not redirected",
        );
    }
    let Some(peers) = &m.allowed_peers else {
        return;
    };
    if peers.is_empty() {
        issues.add(
            format!("{at}.allowedPeers"),
            "must list at least one SPIFFE ID; omit it to allow every peer of the trust bundle",
        );
    }
    for (i, p) in peers.iter().enumerate() {
        let path = format!("{at}.allowedPeers[{i}]");
        if let Some(msg) = spiffe_pattern(p) {
            issues.add(path, msg);
        } else if let Some(first) = peers[..i].iter().position(|o| o == p) {
            issues.add(
                path,
                format!("{p:?} is already listed at {at}.allowedPeers[{first}]"),
            );
        }
    }
}

/// Checks `s.mesh` of the service at `base` (e.g. `services[0]`).
pub(super) fn check_service(base: &str, s: &Service, m: &ServiceMesh, issues: &mut Issues) {
    if s.tls.is_some() {
        issues.add(
            format!("{base}.mesh"),
            "not allowed with tls: mesh mTLS uses the workload identity, not files",
        );
    }
    if let Some(msg) = spiffe_pattern(&m.spiffe_id) {
        issues.add(format!("{base}.mesh.spiffeId"), msg);
    }
}

/// Why `p` is neither a SPIFFE ID (`spiffe://<trust domain>/<path>`) nor a prefix
/// of one ending in `*`, if it is not.
fn spiffe_pattern(p: &str) -> Option<String> {
    const EXPECTED: &str = "expected spiffe://<trust domain>/<path>, e.g. spiffe://example.org/ns/shop/sa/web, \
         or a prefix ending in *, e.g. spiffe://example.org/ns/shop/*";
    let (body, prefix) = match p.strip_suffix('*') {
        Some(body) => (body, true),
        None => (p, false),
    };
    let Some(rest) = body.strip_prefix("spiffe://") else {
        return Some(format!("invalid SPIFFE ID {p:?}: {EXPECTED}"));
    };
    let Some((td, path)) = rest.split_once('/') else {
        return Some(format!(
            "invalid SPIFFE ID {p:?}: no path after the trust domain; {EXPECTED}"
        ));
    };
    let td_ok = !td.is_empty()
        && td
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
    if !td_ok {
        return Some(format!(
            "invalid SPIFFE ID {p:?}: trust domain {td:?} may only contain lower-case letters, \
             digits, \".\", \"-\" and \"_\"; {EXPECTED}"
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/')))
    {
        return Some(format!(
            "invalid SPIFFE ID {p:?}: {c:?} is not allowed in the path (letters, digits, \
             \".\", \"-\", \"_\" and \"/\"); {EXPECTED}"
        ));
    }
    let segments: Vec<&str> = path.split('/').collect();
    // A prefix may end in a partial (or empty) segment: `…/sa/web-*`, `…/ns/*`.
    let whole = if prefix {
        &segments[..segments.len() - 1]
    } else {
        &segments[..]
    };
    if whole
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return Some(format!(
            "invalid SPIFFE ID {p:?}: empty, \".\" or \"..\" path segment; {EXPECTED}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::spiffe_pattern;

    #[test]
    fn spiffe_ids_and_prefixes() {
        for ok in [
            "spiffe://example.org/ns/shop/sa/web",
            "spiffe://example.org/*",
            "spiffe://cluster.local/ns/shop/*",
            "spiffe://cluster.local/ns/shop/sa/web-*",
        ] {
            assert_eq!(spiffe_pattern(ok), None, "{ok}");
        }
        for bad in [
            "http://example.org/a",
            "spiffe://example.org",
            "spiffe://example.org/",
            "spiffe://Example.org/a",
            "spiffe://example.org/a//b",
            "spiffe://example.org/a b",
            "spiffe://*",
            "spiffe://example.org/*/x",
        ] {
            assert!(spiffe_pattern(bad).is_some(), "{bad}");
        }
    }
}
