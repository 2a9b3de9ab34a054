//! Mesh mTLS on the data plane: `listeners[].mesh` (terminate mTLS with the
//! workload's own identity, clients proving theirs) and `services[].mesh`
//! (originate mTLS to the endpoints, which must prove the expected SPIFFE ID).
//!
//! The certificates are not in the config: they are the workload identity the
//! process holds (issued by the control plane's CA and rotated without a
//! restart). A config with `mesh` is refused where no identity is installed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// mTLS termination on an `HTTP` or `TCP` listener.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerMesh {
    /// `STRICT` (default): mTLS only, plaintext connections are closed.
    /// `PERMISSIVE`: mTLS and plaintext on the same port (told apart by the first
    /// byte), for callers that have no sidecar yet.
    #[serde(default)]
    pub mode: MeshTlsMode,
    /// SPIFFE IDs allowed to connect: `spiffe://example.org/ns/shop/sa/web`
    /// (exact) or a prefix ending in `*` (`spiffe://example.org/ns/shop/*`).
    /// Absent: every certificate that chains to the trust bundle. A peer not
    /// listed is refused in the handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_peers: Option<Vec<String>>,
}

/// Whether a mesh listener also serves plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
pub enum MeshTlsMode {
    /// mTLS with a client certificate of the mesh only.
    #[default]
    STRICT,
    /// mTLS (client certificate required) or plaintext.
    PERMISSIVE,
}

/// mTLS origination to a service's endpoints (other workloads' sidecars).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceMesh {
    /// The SPIFFE ID the endpoints must present (their certificate's URI SAN),
    /// e.g. `spiffe://example.org/ns/shop/sa/orders`; a trailing `*` accepts any
    /// ID with that prefix. Checked instead of a DNS name: sidecar endpoints are
    /// IP addresses.
    pub spiffe_id: String,
}

/// Whether `id` matches `pattern`: equal, or, for a pattern ending in `*`,
/// starting with what precedes the `*`.
pub fn spiffe_id_matches(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => id == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix_patterns() {
        let id = "spiffe://example.org/ns/shop/sa/web";
        assert!(spiffe_id_matches(id, id));
        assert!(!spiffe_id_matches("spiffe://example.org/ns/shop/sa/we", id));
        assert!(spiffe_id_matches("spiffe://example.org/ns/shop/*", id));
        assert!(spiffe_id_matches("spiffe://example.org/*", id));
        assert!(!spiffe_id_matches("spiffe://example.org/ns/other/*", id));
    }
}
