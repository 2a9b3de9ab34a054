//! Authorization between services: `listeners[].meshAuthorization` (rules on the
//! verified caller's SPIFFE ID or service, and for HTTP on method, path and
//! headers), the listener's `workload` name (the destination of east-west
//! metrics), and `mesh.authorization` (the same rules aimed at a mesh service by
//! name; the control plane copies them into that service's inbound listener).
//!
//! Evaluation follows Istio's AuthorizationPolicy: every `DENY` rule first (any
//! match denies), then the `ALLOW` rules (any match allows), and a request no rule
//! matched gets `defaultAction`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who may call this listener's workload, and what they may do.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshAuthorization {
    /// What a request (or connection) no rule matched gets: `ALLOW` (default) or
    /// `DENY` (default deny: only what an `ALLOW` rule names gets through).
    #[serde(default)]
    pub default_action: MeshAuthzAction,
    /// The rules. `DENY` rules are checked first, whatever their position.
    #[serde(default)]
    pub rules: Vec<MeshAuthzRule>,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
pub enum MeshAuthzAction {
    /// Let it through.
    #[default]
    ALLOW,
    /// Refuse it: `403 mesh_denied` for a request; a connection is closed.
    DENY,
}

/// One rule: it matches a caller in `from` (any caller when empty) doing an
/// operation in `to` (anything when empty).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshAuthzRule {
    /// Unique within the listener (or `mesh.authorization` entry); named in the
    /// `meshgate_mesh_authz_denied_total` metric and in `explain`.
    pub name: String,
    /// `ALLOW` or `DENY`.
    pub action: MeshAuthzAction,
    /// Callers, any of which matches. Empty: every caller (also one without a
    /// verified certificate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<MeshPeer>,
    /// HTTP operations, any of which matches. Empty: the rule is about identity
    /// only, and is also checked for whole connections (at accept, and again when
    /// the config changes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<MeshOperation>,
}

/// A caller, by the SPIFFE ID of its verified certificate. Exactly one of
/// `spiffeId`, `spiffeIdPrefix`, `service` (with an optional `namespace`) or
/// `namespace` alone.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshPeer {
    /// The exact ID, e.g. `spiffe://cluster.local/ns/default/sa/orders`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// IDs starting with this, e.g. `spiffe://cluster.local/ns/payments/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id_prefix: Option<String>,
    /// A mesh service: IDs `spiffe://<any trust domain>/ns/<namespace>/sa/<service>`
    /// (the trust bundle already limits which domains connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// With `service`: its namespace (default `default`). Alone: every service of
    /// that namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// An HTTP operation. Every field given must match; an empty field matches anything.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshOperation {
    /// Upper-case methods, e.g. `[GET, HEAD]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Paths: exact (`/health`), a prefix ending in `/*` (`/api/*` matches `/api/`
    /// and everything below), or `*` (any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Request headers that must all be present with these values (`*`: present
    /// with any value). Names are case-insensitive.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// `mesh.authorization[]`: rules for the inbound side of one mesh service. The
/// control plane appends them to the `meshAuthorization` of that service's
/// generated inbound listener (its `defaultAction` comes from the service's
/// `defaultDeny`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshAuthorizationPolicy {
    /// The mesh service (`mesh.services[].name`) whose callers these rules judge.
    pub service: String,
    /// Its namespace. Default `default`.
    #[serde(default = "MeshAuthorizationPolicy::default_namespace")]
    pub namespace: String,
    /// The rules, as in `listeners[].meshAuthorization.rules`.
    pub rules: Vec<MeshAuthzRule>,
}

impl MeshAuthorizationPolicy {
    fn default_namespace() -> String {
        "default".into()
    }
}
