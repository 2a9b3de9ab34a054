//! `mesh`: the service mesh section of the document the control plane stores.
//! It names the mesh's trust domain and the services that run with a sidecar —
//! their ports and protocols and how strictly their sidecars demand mTLS. The
//! control plane turns it into one generated config per sidecar (inbound
//! listener in front of the app, outbound routes to every other mesh service);
//! a gateway ignores it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::MeshAuthorizationPolicy;

/// The service mesh: who is in it and under which trust domain.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mesh {
    /// The SPIFFE trust domain: workload identities are
    /// `spiffe://<trustDomain>/ns/<namespace>/sa/<service>`. Must be the trust
    /// domain of the control plane's CA (certificates of another domain are
    /// refused by every sidecar). A DNS-like name, lower case. Default
    /// `cluster.local`.
    #[serde(default = "Mesh::default_trust_domain")]
    pub trust_domain: String,
    /// The services that run with a sidecar. A service's name is unique across the
    /// whole mesh (the service registry is keyed by name). Callers reach it by
    /// `<name>` (same namespace), `<name>.<namespace>`,
    /// `<name>.<namespace>.svc` and `<name>.<namespace>.svc.<trustDomain>`.
    #[serde(default)]
    pub services: Vec<MeshService>,
    /// Authorization rules per mesh service (see docs/mesh.md): copied into that
    /// service's generated inbound listener (`meshAuthorization`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization: Vec<MeshAuthorizationPolicy>,
}

impl Mesh {
    fn default_trust_domain() -> String {
        "cluster.local".into()
    }

    /// The SPIFFE ID of `service` in `namespace` under this trust domain.
    pub fn spiffe_id(&self, namespace: &str, service: &str) -> String {
        format!("spiffe://{}/ns/{namespace}/sa/{service}", self.trust_domain)
    }

    /// The mesh service `name` in `namespace`, if declared.
    pub fn service(&self, name: &str, namespace: &str) -> Option<&MeshService> {
        self.services
            .iter()
            .find(|s| s.name == name && s.namespace == namespace)
    }
}

impl Default for Mesh {
    fn default() -> Self {
        Self {
            trust_domain: Self::default_trust_domain(),
            services: Vec::new(),
            authorization: Vec::new(),
        }
    }
}

/// A service whose instances run with a sidecar (`meshgate sidecar --service
/// <name> --namespace <namespace>`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshService {
    /// The service's name: a DNS label (lower-case letters, digits, inner `-`,
    /// at most 63 characters). It is the `sa` of its SPIFFE ID, the name its
    /// sidecars register under and the host name callers use.
    pub name: String,
    /// Its namespace, a DNS label like `name`. Default `default`.
    #[serde(default = "MeshService::default_namespace")]
    pub namespace: String,
    /// The ports callers use, each with its protocol. At least one; each port
    /// once. `HTTP`, `HTTP2` and `GRPC` ports are proxied at L7 (routes, retries,
    /// per-route metrics) to the app's `--app-port`; `TCP` ports at L4.
    pub ports: Vec<MeshPort>,
    /// What the service's sidecars accept on their inbound side: `STRICT`
    /// (default: mTLS from a mesh identity only, plaintext refused) or
    /// `PERMISSIVE` (mTLS and plaintext, for migrating callers without a sidecar).
    #[serde(default)]
    pub mtls: MeshMtlsMode,
    /// Deny every caller that no authorization rule allows (default false: callers
    /// are allowed unless a rule denies them).
    #[serde(default)]
    pub default_deny: bool,
}

impl MeshService {
    fn default_namespace() -> String {
        "default".into()
    }

    /// The `TCP` ports, in declared order.
    pub fn tcp_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports
            .iter()
            .filter(|p| p.protocol == MeshProtocol::TCP)
            .map(|p| p.port)
    }

    /// The protocol of its first L7 (`HTTP`, `HTTP2`, `GRPC`) port, if it has one.
    pub fn http_protocol(&self) -> Option<MeshProtocol> {
        self.ports
            .iter()
            .map(|p| p.protocol)
            .find(|p| *p != MeshProtocol::TCP)
    }
}

/// One port of a mesh service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshPort {
    /// The port number callers use (1-65535). For `TCP` ports the app listens on
    /// this port on 127.0.0.1.
    pub port: u16,
    /// `HTTP` (default: HTTP/1.1, and h2c when the client speaks it), `HTTP2`
    /// (HTTP/2 between the sidecars and to the app), `GRPC` (as `HTTP2`) or `TCP`
    /// (any other protocol, proxied as a byte stream over mTLS).
    #[serde(default)]
    pub protocol: MeshProtocol,
}

/// The protocol of a mesh service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
pub enum MeshProtocol {
    /// HTTP/1.1 (and h2c prior knowledge from the caller), proxied at L7.
    #[default]
    HTTP,
    /// HTTP/2, proxied at L7; HTTP/2 to the app (prior knowledge).
    HTTP2,
    /// gRPC: HTTP/2 at L7, `grpc-status` in metrics and retries.
    GRPC,
    /// Any other TCP protocol, proxied at L4.
    TCP,
}

/// How strictly a service's sidecars demand mTLS on their inbound side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
pub enum MeshMtlsMode {
    /// Only mTLS with a certificate of the mesh; plaintext is refused.
    #[default]
    STRICT,
    /// mTLS or plaintext (callers without a sidecar, during a migration).
    PERMISSIVE,
}
