//! Checks of `clientCert` policies: allow entries that say something and can match
//! (subjects in RFC 4514, absolute URIs, DNS suffixes that start at a label
//! boundary), header names; and a warning when the policy runs on a listener that
//! never asks for client certificates, where it can only refuse.

use crate::model::{ClientCertMatch, ClientCertPolicy, PolicyType, canonical_subject};
use crate::validate::Issues;
use crate::{Config, ListenerProtocol};

use super::super::syntax;

/// Checks the settings at `at` (e.g. `policies[3].clientCert`).
pub(super) fn check(at: &str, p: &ClientCertPolicy, config: &Config, issues: &mut Issues) {
    for (i, m) in p.allow.iter().enumerate() {
        check_match(&format!("{at}.allow[{i}]"), m, issues);
    }
    if p.require_consumer && config.consumers.is_empty() {
        issues.add(
            format!("{at}.requireConsumer"),
            "no consumers are defined, so every certificate would be refused",
        );
    }
    for (i, g) in p.groups.iter().enumerate() {
        if g.trim().is_empty() {
            issues.add(format!("{at}.groups[{i}]"), "must not be empty");
        } else if g.contains(',') {
            issues.add(
                format!("{at}.groups[{i}]"),
                format!("{g:?} must not contain \",\" (groups are sent comma-separated)"),
            );
        }
    }
    for (field, name) in [
        ("consumerHeader", &p.consumer_header),
        ("groupsHeader", &p.groups_header),
        ("subjectHeader", &p.subject_header),
    ] {
        if let Some(msg) = syntax::header_name(name) {
            issues.add(format!("{at}.{field}"), msg);
        }
    }
}

fn check_match(at: &str, m: &ClientCertMatch, issues: &mut Issues) {
    if m.subject.is_none()
        && m.uri.is_none()
        && m.uri_prefix.is_none()
        && m.dns.is_none()
        && m.dns_suffix.is_none()
    {
        issues.add(
            at,
            "set at least one of subject, uri, uriPrefix, dns, dnsSuffix",
        );
        return;
    }
    if m.uri.is_some() && m.uri_prefix.is_some() {
        issues.add(at, "set uri or uriPrefix, not both");
    }
    if m.dns.is_some() && m.dns_suffix.is_some() {
        issues.add(at, "set dns or dnsSuffix, not both");
    }
    if let Some(s) = &m.subject
        && let Err(e) = canonical_subject(s)
    {
        issues.add(
            format!("{at}.subject"),
            format!("invalid subject {s:?}: {e}"),
        );
    }
    for (field, uri) in [("uri", &m.uri), ("uriPrefix", &m.uri_prefix)] {
        if let Some(u) = uri
            && let Some(msg) = uri_problem(u)
        {
            issues.add(format!("{at}.{field}"), msg);
        }
    }
    if let Some(d) = &m.dns
        && let Some(msg) = syntax::route_hostname(d)
    {
        issues.add(format!("{at}.dns"), msg);
    }
    if let Some(d) = &m.dns_suffix {
        match d.strip_prefix('.') {
            None => issues.add(
                format!("{at}.dnsSuffix"),
                format!(
                    "{d:?} must start with \".\" (.{d}), so that a name merely ending \
                     in the same letters does not match"
                ),
            ),
            Some(rest) => {
                if let Some(msg) = syntax::plain_hostname(rest) {
                    issues.add(format!("{at}.dnsSuffix"), msg);
                }
            }
        }
    }
}

/// Why `u` is not an absolute URI with a scheme (`spiffe://…`, `urn:…`), if it is not.
fn uri_problem(u: &str) -> Option<String> {
    let scheme_ok = u.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if !scheme_ok || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some(format!(
            "invalid URI {u:?}: expected an absolute URI without spaces, such as spiffe://example.org/"
        ))
    } else {
        None
    }
}

/// Warns where a `ClientCert` policy runs on a listener that asks for no client
/// certificates (plain HTTP, or HTTPS without `tls.clientAuth`): every request
/// there is refused with 401.
pub(super) fn warnings(config: &Config, issues: &mut Issues) {
    let is_client_cert = |name: &String| {
        config
            .policies
            .iter()
            .any(|p| &p.name == name && p.kind == PolicyType::ClientCert)
    };
    let no_client_auth = |l: &crate::Listener| {
        l.https_redirect.is_none()
            && matches!(l.protocol, ListenerProtocol::HTTP | ListenerProtocol::HTTPS)
            && l.tls.as_ref().is_none_or(|t| t.client_auth.is_none())
    };
    let message = |policy: &str, listener: &str| {
        format!(
            "ClientCert policy {policy:?} runs on listener {listener:?}, which asks for no \
             client certificates (no tls.clientAuth): every request there is refused with 401"
        )
    };
    for (li, l) in config.listeners.iter().enumerate() {
        for (j, n) in l.policies.iter().enumerate() {
            if is_client_cert(n) && no_client_auth(l) {
                issues.add(
                    format!("listeners[{li}].policies[{j}]"),
                    message(n, &l.name),
                );
            }
        }
    }
    for (ri, r) in config.routes.iter().enumerate() {
        for (j, n) in r.policies.iter().enumerate() {
            if !is_client_cert(n) {
                continue;
            }
            let serving = config
                .listeners
                .iter()
                .filter(|l| r.listeners.is_empty() || r.listeners.contains(&l.name));
            for l in serving.filter(|l| no_client_auth(l)) {
                issues.add(format!("routes[{ri}].policies[{j}]"), message(n, &l.name));
            }
        }
    }
}
