//! Authorization between services (`listeners[].meshAuthorization`) and the
//! east-west edge of each request, for one snapshot.
//!
//! - **Per request**, before the listener's policies: `check_request` judges the
//!   caller's SPIFFE ID (from its verified certificate), method, path and headers;
//!   a denial is `403 mesh_denied`, counted in `meshgate_mesh_authz_denied_total`
//!   and named in `explain`.
//! - **Per connection**, after the TLS handshake: `admit` closes a caller that no
//!   request could be allowed for, and registers the connection (only when it has
//!   a verified identity or its listener has rules) so that
//! - **on every config change** `recheck` re-judges the open connections under the
//!   new rules and closes the ones now denied ([`live`]).
//!
//! Listeners without rules and connections without identity pay one short scan
//! per connection and one empty-vector check per request.

mod live;
mod rules;

use std::sync::Arc;
use std::time::Duration;

use meshgate_config::Config;
use meshgate_observe::metrics::{MeshEdge, MeshMetrics};

use crate::filter::{Flow, RequestCx};
use crate::proxy::{ConnInfo, Shared};
use crate::rescue::ProxyError;
use crate::server::tls::ClientCert;

pub use live::{Admitted, Entry, Registry, Revocable};
pub use rules::{DEFAULT_ACTION, Policy, Verdict, parse_spiffe};

/// The mesh authorization state of one snapshot.
#[derive(Debug)]
pub struct MeshAuthz {
    /// Listeners with `meshAuthorization`, compiled.
    policies: Vec<(Arc<str>, Policy)>,
    /// Every listener's east-west destination name (`workload`, else its name),
    /// and whether it was configured explicitly.
    destinations: Vec<(Arc<str>, Arc<str>, bool)>,
    /// Some listener names its `workload` (else only mTLS connections have edges).
    any_workload: bool,
    /// Open tracked connections; shared with the previous and next snapshots.
    registry: Arc<Registry>,
    metrics: MeshMetrics,
    /// In-flight requests' grace when a connection is closed (`runtime.drainTimeout`).
    grace: Duration,
}

impl MeshAuthz {
    /// Compiles the rules of `config`, keeping `previous`'s connection registry.
    pub fn compile(
        config: &Config,
        previous: Option<&MeshAuthz>,
        metrics: &MeshMetrics,
    ) -> Result<Self, String> {
        let mut policies = Vec::new();
        for l in &config.listeners {
            if let Some(a) = &l.mesh_authorization {
                let p = Policy::compile(a).map_err(|e| format!("listeners {:?}: {e}", l.name))?;
                policies.push((Arc::from(l.name.as_str()), p));
            }
        }
        let destinations = (config.listeners.iter())
            .map(|l| {
                let dest = l.workload.as_deref().unwrap_or(&l.name);
                (l.name.as_str().into(), dest.into(), l.workload.is_some())
            })
            .collect();
        Ok(MeshAuthz {
            policies,
            any_workload: config.listeners.iter().any(|l| l.workload.is_some()),
            destinations,
            registry: previous.map_or_else(Default::default, |p| p.registry.clone()),
            metrics: metrics.clone(),
            grace: config.runtime.drain_timeout.get(),
        })
    }

    fn policy(&self, listener: &str) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|(n, _)| &**n == listener)
            .map(|(_, p)| p)
    }

    /// Judges a request of `listener`; `Err(MeshDenied)` when refused.
    pub fn check_request(
        &self,
        listener: &str,
        parts: &http::request::Parts,
        cx: &mut RequestCx<'_>,
    ) -> Result<(), ProxyError> {
        if self.policies.is_empty() {
            return Ok(());
        }
        let Some((name, policy)) = self.policies.iter().find(|(n, _)| &**n == listener) else {
            return Ok(());
        };
        let peer = cx.client_cert.and_then(spiffe_id);
        let v = policy.check_request(peer, &parts.method, parts.uri.path(), &parts.headers);
        if cx.explain.is_some() {
            let detail = describe(&v, peer);
            cx.note(|| detail);
            let flow = if v.allow {
                Flow::Continue
            } else {
                Flow::Reject(ProxyError::MeshDenied)
            };
            if let Some(e) = cx.explain.as_mut() {
                e.record("meshAuthorization", "MeshAuthorization", &flow);
            }
        }
        if v.allow {
            return Ok(());
        }
        self.metrics.denied(name, &v.rule, "request");
        Err(ProxyError::MeshDenied)
    }

    /// Lets a new connection of `listener` in, or refuses it (`None`, counted)
    /// when its caller is denied whatever it would ask. `http`: served as HTTP.
    pub fn admit(
        &self,
        listener: &Arc<str>,
        cert: Option<&ClientCert>,
        http: bool,
    ) -> Option<Admitted> {
        let policy = self.policy(listener);
        if policy.is_none() && cert.is_none() {
            return Some(Admitted::Untracked);
        }
        let peer = cert.and_then(spiffe_id);
        if let Some(p) = policy {
            let v = p.check_connection(peer, http);
            if !v.allow {
                self.metrics.denied(listener, &v.rule, "connection");
                tracing::debug!(%listener, peer = peer.unwrap_or("-"), rule = %v.rule, "mesh authorization: connection refused");
                return None;
            }
        }
        let entry =
            self.registry
                .register(listener.clone(), peer.map(Into::into), http, self.grace);
        Some(Admitted::Tracked(entry))
    }

    /// Re-judges every open tracked connection under this snapshot's rules and
    /// closes the ones now denied, and those of listeners that are gone.
    pub fn recheck(&self) {
        for entry in self.registry.live() {
            if !self.destinations.iter().any(|(n, ..)| *n == entry.listener) {
                entry.close();
                continue;
            }
            let Some(policy) = self.policy(&entry.listener) else {
                continue;
            };
            let v = policy.check_connection(entry.peer.as_deref(), entry.http);
            if !v.allow {
                self.metrics.denied(&entry.listener, &v.rule, "recheck");
                tracing::info!(listener = %entry.listener, peer = entry.peer.as_deref().unwrap_or("-"), rule = %v.rule, "mesh authorization changed: closing a connection of a caller now denied");
                entry.close();
            }
        }
    }

    /// Closes every tracked connection gracefully (the gateway is shutting down).
    pub fn drain(&self) {
        for entry in self.registry.live() {
            entry.close();
        }
    }

    /// The east-west edge a request on `conn` is counted on: on connections with a
    /// verified certificate, and on listeners with an explicit `workload`.
    pub fn edge(&self, conn: &ConnInfo) -> Option<Arc<MeshEdge>> {
        let cert = conn.client_cert.as_deref();
        if cert.is_none() && !self.any_workload {
            return None;
        }
        let (_, dest, explicit) = self
            .destinations
            .iter()
            .find(|(n, ..)| *n == conn.listener)?;
        if cert.is_none() && !explicit {
            return None;
        }
        let source = cert.and_then(spiffe_id).and_then(parse_spiffe);
        Some(match source {
            Some((ns, sa)) => self.metrics.edge(&format!("{sa}.{ns}"), dest),
            None => self.metrics.edge("unknown", dest),
        })
    }
}

/// Lets a new HTTP connection in (see [`admit_stream`]).
pub fn admit(shared: &Shared, conn: &ConnInfo) -> Option<Admitted> {
    admit_stream(shared, &conn.listener, conn.client_cert.as_deref(), true)
}

/// Lets a new connection of `listener` in under the rules served now (see
/// [`MeshAuthz::admit`]). The snapshot is loaded again once the connection is
/// registered: a config change stored in between may have run its `recheck`
/// before the registration, so the connection is judged again under it here.
pub fn admit_stream(
    shared: &Shared,
    listener: &Arc<str>,
    cert: Option<&ClientCert>,
    http: bool,
) -> Option<Admitted> {
    let mut snapshot = shared.snapshot.load_full();
    loop {
        let admitted = snapshot.mesh_authz.admit(listener, cert, http)?;
        let now = shared.snapshot.load_full();
        if Arc::ptr_eq(&now, &snapshot) {
            return Some(admitted);
        }
        snapshot = now;
    }
}

/// The SPIFFE ID of a certificate: its first `spiffe://` URI SAN.
pub fn spiffe_id(cert: &ClientCert) -> Option<&str> {
    cert.uris
        .iter()
        .find(|u| u.starts_with("spiffe://"))
        .map(String::as_str)
}

/// What `explain` says about a verdict.
fn describe(v: &Verdict, peer: Option<&str>) -> String {
    let who = peer.unwrap_or("a caller without a verified SPIFFE ID");
    let what = if v.allow { "allows" } else { "denies" };
    if &*v.rule == DEFAULT_ACTION {
        format!("no rule matched {who}: defaultAction {what}")
    } else {
        format!("rule {:?} {what} {who}", v.rule)
    }
}
