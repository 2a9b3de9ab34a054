//! The config of one sidecar, generated from the mesh document (`mesh` section)
//! and the registry. Every instance of a service gets the same config (ports
//! are the defaults of [`super::ports`]; each sidecar moves them to its own with
//! [`super::localize`]), so every instance reports the same version. (It is
//! built per stream, on every config or registry change: cheap next to the
//! work of pushing it.)
//!
//! What it holds, for sidecar S in namespace N (names are fixed, see
//! docs/mesh.md):
//! - listener `inbound` (`HTTP`, `0.0.0.0:15006`, `mesh: {mode: <S.mtls>}`, workload
//!   `S.N`) with route `inbound` to service `local-app` (the app, `127.0.0.1:<first
//!   L7 port of S>`); `meshAuthorization` from `defaultDeny` and the
//!   `mesh.authorization` entries aimed at S;
//! - one `TCP` listener `inbound-tcp-<P>` per TCP port P of S (`0.0.0.0:15006+1+i`
//!   for the i-th TCP port, mTLS as `inbound`) to service `local-app-tcp-<P>`
//!   (`127.0.0.1:P`);
//! - listener `outbound` (`HTTP`, `127.0.0.1:15001`) with one route
//!   `outbound-<T>.<M>` per mesh service T (namespace M) that has an L7 port,
//!   matching the host names `T` (same namespace only), `T.M`, `T.M.svc` and
//!   `T.M.svc.<trust domain>` (any port), to service `T.M`: T's registered
//!   sidecars, mTLS expecting T's SPIFFE ID, with the mesh defaults below;
//! - one `TCP` listener `outbound-tcp-<T>.<M>-<P>` per TCP port P of every mesh
//!   service (`127.0.0.1:15001+1+j`, j counting TCP ports across `mesh.services`
//!   in order) to service `<T>.<M>:<P>`: T's sidecars at their inbound port
//!   `+1+i`, mTLS.
//!
//! Mesh defaults (the gateway's machinery, tuned for east-west): round robin;
//! outlier detection (5 consecutive failures eject a sidecar); retries (2
//! attempts on connect failure, reset and 503 — idempotent requests only for
//! 503); connect timeout 1 s; no request timeout (streams and gRPC calls may be
//! long).

use meshgate_config::{Config, Mesh, MeshAuthzRule, MeshProtocol, MeshService};
use serde_json::{Value, json};

use super::ports::{DEFAULT_INBOUND, DEFAULT_OUTBOUND};
use crate::discovery::registered;
use crate::store::Instances;

/// Why no config can be generated for a sidecar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    #[error("the config has no mesh section (mesh.services)")]
    NoMesh,
    #[error("service {service:?} in namespace {namespace:?} is not declared in mesh.services")]
    UnknownService { service: String, namespace: String },
    #[error(
        "{what} port {port} does not fit: the sidecar port scheme ({base} + 1 + index) passes 65535"
    )]
    PortRange {
        what: &'static str,
        base: u16,
        port: u32,
    },
    /// A bug: the generated document does not fit the model.
    #[error("generated config does not fit the model: {0}")]
    Model(String),
}

/// The config of a sidecar of `service` in `namespace`, from the mesh of `doc`
/// and the registered `instances` (each sidecar registers its inbound address
/// under its service's name).
pub fn sidecar_config(
    doc: &Config,
    service: &str,
    namespace: &str,
    instances: &Instances,
) -> Result<Config, GenerateError> {
    let mesh = doc.mesh.as_ref().ok_or(GenerateError::NoMesh)?;
    let me = mesh
        .service(service, namespace)
        .ok_or_else(|| GenerateError::UnknownService {
            service: service.to_owned(),
            namespace: namespace.to_owned(),
        })?;
    let mut g = Generated::default();
    g.inbound(mesh, me)?;
    g.outbound(mesh, me, instances)?;
    let value = json!({
        // A sidecar's own admin API is off unless `meshgate sidecar --admin` asks.
        "admin": {"enabled": false},
        "listeners": g.listeners,
        "routes": g.routes,
        "services": g.services,
    });
    serde_json::from_value(value).map_err(|e| GenerateError::Model(e.to_string()))
}

/// The generated sections, as the document's JSON.
#[derive(Default)]
struct Generated {
    listeners: Vec<Value>,
    routes: Vec<Value>,
    services: Vec<Value>,
}

impl Generated {
    fn inbound(&mut self, mesh: &Mesh, me: &MeshService) -> Result<(), GenerateError> {
        let workload = format!("{}.{}", me.name, me.namespace);
        let listener_mesh = json!({"mode": format!("{:?}", me.mtls)});
        let authz = authorization(mesh, me, false)?;
        if let Some(protocol) = me.http_protocol() {
            let port = me
                .ports
                .iter()
                .find(|p| p.protocol == protocol)
                .map_or(0, |p| p.port);
            let mut listener = json!({
                "name": "inbound",
                "address": format!("0.0.0.0:{DEFAULT_INBOUND}"),
                "mesh": listener_mesh,
                "workload": workload,
            });
            if let Some(a) = &authz {
                listener["meshAuthorization"] = a.clone();
            }
            self.listeners.push(listener);
            self.routes.push(json!({
                "name": "inbound",
                "listeners": ["inbound"],
                "backendRefs": [{"name": "local-app"}],
            }));
            self.services.push(json!({
                "name": "local-app",
                "endpoints": [format!("127.0.0.1:{port}")],
                "protocol": upstream_protocol(protocol),
            }));
        }
        for (i, port) in me.tcp_ports().enumerate() {
            let at = offset(DEFAULT_INBOUND, i, "inbound TCP")?;
            let app = format!("local-app-tcp-{port}");
            let mut listener = json!({
                "name": format!("inbound-tcp-{port}"),
                "address": format!("0.0.0.0:{at}"),
                "protocol": "TCP",
                "mesh": listener_mesh,
                "workload": workload,
                "l4": {"service": app},
            });
            if let Some(a) = authorization(mesh, me, true)? {
                listener["meshAuthorization"] = a;
            }
            self.listeners.push(listener);
            self.services.push(json!({
                "name": app,
                "endpoints": [format!("127.0.0.1:{port}")],
            }));
        }
        Ok(())
    }

    fn outbound(
        &mut self,
        mesh: &Mesh,
        me: &MeshService,
        instances: &Instances,
    ) -> Result<(), GenerateError> {
        self.listeners.push(json!({
            "name": "outbound",
            "address": format!("127.0.0.1:{DEFAULT_OUTBOUND}"),
        }));
        let mut j = 0;
        for t in &mesh.services {
            let full = format!("{}.{}", t.name, t.namespace);
            let spiffe_id = mesh.spiffe_id(&t.namespace, &t.name);
            let sidecars = registered(instances, &t.name);
            if let Some(protocol) = t.http_protocol() {
                let mut hostnames = Vec::new();
                if t.namespace == me.namespace {
                    hostnames.push(t.name.clone());
                }
                hostnames.push(full.clone());
                hostnames.push(format!("{full}.svc"));
                hostnames.push(format!("{full}.svc.{}", mesh.trust_domain));
                self.routes.push(json!({
                    "name": format!("outbound-{full}"),
                    "listeners": ["outbound"],
                    "hostnames": hostnames,
                    "backendRefs": [{"name": full}],
                    "retry": {"attempts": 2, "retryOn": retry_on(protocol)},
                }));
                let endpoints: Vec<Value> = sidecars
                    .iter()
                    .map(|e| json!({"address": e.address, "weight": e.weight}))
                    .collect();
                self.services
                    .push(mesh_service(&full, endpoints, &spiffe_id, protocol));
            }
            for (i, port) in t.tcp_ports().enumerate() {
                let name = format!("{full}:{port}");
                let local = offset(DEFAULT_OUTBOUND, j, "outbound TCP")?;
                j += 1;
                self.listeners.push(json!({
                    "name": format!("outbound-tcp-{full}-{port}"),
                    "address": format!("127.0.0.1:{local}"),
                    "protocol": "TCP",
                    "l4": {"service": name},
                }));
                let endpoints: Vec<Value> = sidecars
                    .iter()
                    .filter_map(|e| {
                        let address = shift_port(&e.address, i)?;
                        Some(json!({"address": address, "weight": e.weight}))
                    })
                    .collect();
                self.services.push(mesh_service(
                    &name,
                    endpoints,
                    &spiffe_id,
                    MeshProtocol::TCP,
                ));
            }
        }
        Ok(())
    }
}

/// The `meshAuthorization` of `me`'s inbound listeners: `defaultAction` from its
/// `defaultDeny`, the rules of every `mesh.authorization` entry aimed at it (on
/// a `tcp` listener only those without HTTP operations, which could never match
/// a connection). None when there is nothing to enforce.
fn authorization(mesh: &Mesh, me: &MeshService, tcp: bool) -> Result<Option<Value>, GenerateError> {
    let rules: Vec<&MeshAuthzRule> = mesh
        .authorization
        .iter()
        .filter(|p| p.service == me.name && p.namespace == me.namespace)
        .flat_map(|p| &p.rules)
        .filter(|r| !tcp || r.to.is_empty())
        .collect();
    if !me.default_deny && rules.is_empty() {
        return Ok(None);
    }
    let rules = serde_json::to_value(rules).map_err(|e| GenerateError::Model(e.to_string()))?;
    let default_action = if me.default_deny { "DENY" } else { "ALLOW" };
    Ok(Some(
        json!({"defaultAction": default_action, "rules": rules}),
    ))
}

/// A service of other sidecars: discovered (so it may have no endpoint yet),
/// mTLS to `spiffe_id`, with the mesh defaults.
fn mesh_service(name: &str, endpoints: Vec<Value>, spiffe_id: &str, p: MeshProtocol) -> Value {
    let mut s = json!({
        "name": name,
        "endpoints": endpoints,
        "discovery": {"registry": {}},
        "mesh": {"spiffeId": spiffe_id},
        "outlierDetection": {"consecutive5xx": 0, "consecutiveFailures": 5},
    });
    if p != MeshProtocol::TCP {
        s["protocol"] = json!(upstream_protocol(p));
    }
    s
}

/// What the mesh retries: failures before the request reached the app, and 503
/// (the destination sidecar had no app to send it to); gRPC's UNAVAILABLE too.
fn retry_on(p: MeshProtocol) -> Vec<&'static str> {
    let mut on = vec!["connect-failure", "reset", "503"];
    if p == MeshProtocol::GRPC {
        on.push("grpc-unavailable");
    }
    on
}

/// HTTP version spoken for a mesh protocol (between sidecars and to the app).
fn upstream_protocol(p: MeshProtocol) -> &'static str {
    match p {
        MeshProtocol::HTTP2 | MeshProtocol::GRPC => "HTTP2",
        MeshProtocol::HTTP | MeshProtocol::TCP => "HTTP1",
    }
}

/// `base + 1 + index`, if it is a port.
fn offset(base: u16, index: usize, what: &'static str) -> Result<u16, GenerateError> {
    let port = u32::from(base) + 1 + index as u32;
    u16::try_from(port).map_err(|_| GenerateError::PortRange { what, base, port })
}

/// A registered inbound address `host:port` moved to `port + 1 + index` (the
/// sidecar's `index`-th TCP port); None when it is not `host:port` or passes 65535.
fn shift_port(address: &str, index: usize) -> Option<String> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let shifted = u16::try_from(u32::from(port) + 1 + index as u32).ok()?;
    Some(format!("{host}:{shifted}"))
}

#[cfg(test)]
mod tests;
