//! Checks of `listeners[].meshAuthorization`, `listeners[].workload` and
//! `mesh.authorization`: rule names present and unique, each caller selector
//! naming exactly one kind of identity in valid syntax, operations with valid
//! methods, paths and headers, no HTTP operations where there is no HTTP (TCP
//! listeners) and no rules where no certificate is ever seen (TLS passthrough),
//! and `mesh.authorization` aimed at a declared mesh service.

use crate::model::{ListenerProtocol, MeshAuthzRule, MeshOperation, MeshPeer};
use crate::{Config, Listener};

use super::{Issues, syntax};

/// Checks every listener's `meshAuthorization` and `workload`, then `mesh.authorization`.
pub(super) fn check(config: &Config, issues: &mut Issues) {
    for (i, l) in config.listeners.iter().enumerate() {
        check_listener(l, &format!("listeners[{i}]"), issues);
    }
    let Some(mesh) = &config.mesh else {
        return;
    };
    for (i, p) in mesh.authorization.iter().enumerate() {
        let at = format!("mesh.authorization[{i}]");
        if mesh.service(&p.service, &p.namespace).is_none() {
            issues.add(
                format!("{at}.service"),
                format!(
                    "no mesh service {:?} in namespace {:?} (declare it in mesh.services)",
                    p.service, p.namespace
                ),
            );
        }
        check_rules(&p.rules, &format!("{at}.rules"), true, issues);
    }
}

fn check_listener(l: &Listener, at: &str, issues: &mut Issues) {
    if let Some(w) = &l.workload
        && (w.trim().is_empty() || w.contains(char::is_whitespace))
    {
        issues.add(
            format!("{at}.workload"),
            format!("{w:?} is not a service name: expected name.namespace, e.g. orders.default"),
        );
    }
    let Some(authz) = &l.mesh_authorization else {
        return;
    };
    let at = format!("{at}.meshAuthorization");
    if l.protocol == ListenerProtocol::TLS {
        issues.add(
            at,
            "not allowed when protocol is TLS: a passthrough listener never sees the caller's certificate",
        );
        return;
    }
    let http = l.protocol != ListenerProtocol::TCP;
    check_rules(&authz.rules, &format!("{at}.rules"), http, issues);
}

fn check_rules(rules: &[MeshAuthzRule], at: &str, http: bool, issues: &mut Issues) {
    for (i, r) in rules.iter().enumerate() {
        let base = format!("{at}[{i}]");
        if r.name.trim().is_empty() {
            issues.add(format!("{base}.name"), "must not be empty");
        } else if let Some(first) = rules[..i].iter().position(|o| o.name == r.name) {
            issues.add(
                format!("{base}.name"),
                format!("rule {:?} is already defined at [{first}]", r.name),
            );
        }
        for (j, p) in r.from.iter().enumerate() {
            check_peer(p, &format!("{base}.from[{j}]"), issues);
        }
        if !http && !r.to.is_empty() {
            issues.add(
                format!("{base}.to"),
                "HTTP operations cannot be checked on a TCP listener: rules there match callers only",
            );
            continue;
        }
        for (j, op) in r.to.iter().enumerate() {
            check_operation(op, &format!("{base}.to[{j}]"), issues);
        }
    }
}

fn check_peer(p: &MeshPeer, at: &str, issues: &mut Issues) {
    let kinds = [
        p.spiffe_id.is_some(),
        p.spiffe_id_prefix.is_some(),
        p.service.is_some() || p.namespace.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        issues.add(
            at,
            "must name exactly one of spiffeId, spiffeIdPrefix, service (with an optional namespace) or namespace",
        );
        return;
    }
    for (field, value) in [
        ("spiffeId", &p.spiffe_id),
        ("spiffeIdPrefix", &p.spiffe_id_prefix),
    ] {
        if let Some(v) = value
            && (!v.starts_with("spiffe://") || v.len() <= "spiffe://".len())
        {
            issues.add(
                format!("{at}.{field}"),
                format!("{v:?} is not a SPIFFE ID: expected spiffe://<trust-domain>/…"),
            );
        }
    }
    for (field, value) in [("service", &p.service), ("namespace", &p.namespace)] {
        if let Some(v) = value
            && !is_label(v)
        {
            issues.add(
                format!("{at}.{field}"),
                format!("invalid name {v:?}: expected a DNS label (a-z, 0-9, inner -, at most 63)"),
            );
        }
    }
}

/// A DNS label, as mesh service names and namespaces are.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn check_operation(op: &MeshOperation, at: &str, issues: &mut Issues) {
    for (k, m) in op.methods.iter().enumerate() {
        if let Some(msg) = syntax::method(m) {
            issues.add(format!("{at}.methods[{k}]"), msg);
        }
    }
    for (k, p) in op.paths.iter().enumerate() {
        if let Some(msg) = path_pattern(p) {
            issues.add(format!("{at}.paths[{k}]"), msg);
        }
    }
    for (name, value) in &op.headers {
        let field = format!("{at}.headers.{name}");
        if let Some(msg) = syntax::header_name(name) {
            issues.add(field, msg);
        } else if let Some(msg) = syntax::header_value(value) {
            issues.add(field, msg);
        }
    }
}

/// `*`, an exact path, or a prefix `/x/*`; `*` nowhere else.
fn path_pattern(p: &str) -> Option<String> {
    if p == "*" {
        return None;
    }
    let base = p
        .strip_suffix("/*")
        .map_or(p, |b| if b.is_empty() { "/" } else { b });
    if base.contains('*') {
        return Some(format!(
            "invalid path {p:?}: \"*\" is only allowed alone or as a trailing \"/*\" (prefix match)"
        ));
    }
    syntax::path(base)
}
