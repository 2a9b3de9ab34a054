//! Checks of `mesh`: the trust domain's syntax, mesh service names and namespaces
//! (DNS labels: they appear in host names and SPIFFE IDs), names unique across the
//! mesh, and each service's ports (at least one, in range, each once).

use crate::model::{Mesh, MeshService};

use super::Issues;

/// Checks the `mesh` section.
pub(super) fn check(mesh: &Mesh, issues: &mut Issues) {
    if let Some(msg) = trust_domain(&mesh.trust_domain) {
        issues.add("mesh.trustDomain", msg);
    }
    for (i, s) in mesh.services.iter().enumerate() {
        let at = format!("mesh.services[{i}]");
        check_service(&at, s, issues);
        if let Some(first) = mesh.services[..i].iter().position(|o| o.name == s.name) {
            issues.add(
                format!("{at}.name"),
                format!(
                    "service {:?} is already declared at mesh.services[{first}]: names are \
                     unique across the mesh (sidecars register under the name alone)",
                    s.name
                ),
            );
        }
    }
}

fn check_service(at: &str, s: &MeshService, issues: &mut Issues) {
    if let Some(msg) = label(&s.name) {
        issues.add(format!("{at}.name"), msg);
    }
    if let Some(msg) = label(&s.namespace) {
        issues.add(format!("{at}.namespace"), msg);
    }
    if s.ports.is_empty() {
        issues.add(
            format!("{at}.ports"),
            "must list at least one port, e.g. [{port: 8080, protocol: HTTP}]",
        );
    }
    for (j, p) in s.ports.iter().enumerate() {
        let path = format!("{at}.ports[{j}].port");
        if p.port == 0 {
            issues.add(path, "must be 1-65535");
        } else if let Some(first) = s.ports[..j].iter().position(|o| o.port == p.port) {
            issues.add(
                path,
                format!("port {} is already declared at {at}.ports[{first}]", p.port),
            );
        }
    }
}

/// Why `name` is not a DNS label (RFC 1123, lower case), if it is not.
fn label(name: &str) -> Option<String> {
    const EXPECTED: &str = "expected a DNS label such as orders or billing-v2";
    let reason = if name.is_empty() {
        "must not be empty".to_owned()
    } else if name.len() > 63 {
        format!("longer than 63 characters ({})", name.len())
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        format!("{name:?} may only contain lower-case letters, digits and \"-\"")
    } else if name.starts_with('-') || name.ends_with('-') {
        format!("{name:?} must not start or end with \"-\"")
    } else {
        return None;
    };
    Some(format!("{reason}; {EXPECTED}"))
}

/// Why `td` is not a SPIFFE trust domain (lower-case letters, digits, `.`, `-`,
/// `_`; no scheme, port or path), if it is not.
fn trust_domain(td: &str) -> Option<String> {
    const EXPECTED: &str = "expected a name such as cluster.local or example.org";
    let reason = if td.is_empty() {
        "must not be empty".to_owned()
    } else if td.len() > 255 {
        format!("longer than 255 characters ({})", td.len())
    } else if let Some(c) = td
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        format!("{td:?} contains {c:?}: only lower-case letters, digits, \".\", \"-\" and \"_\"")
    } else if td.starts_with('.') || td.ends_with('.') || td.contains("..") {
        format!("{td:?} has an empty label")
    } else {
        return None;
    };
    Some(format!("{reason}; {EXPECTED}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_trust_domains() {
        assert_eq!(label("orders-v2"), None);
        assert!(label("Orders").is_some());
        assert!(label("a.b").is_some());
        assert!(label("-a").is_some());
        assert!(label(&"a".repeat(64)).is_some());
        assert_eq!(trust_domain("cluster.local"), None);
        assert_eq!(trust_domain("my_domain.example"), None);
        assert!(trust_domain("spiffe://x").is_some());
        assert!(trust_domain("x..y").is_some());
        assert!(trust_domain("").is_some());
    }
}
