//! The `Identity` gRPC service of the control plane, on top of [`MeshCa`].
//!
//! Who may get which identity (the token decides, never the CSR):
//! - a **sidecar** token may sign for the services its scope lists (any service
//!   when the list is empty), in any namespace (tokens do not name namespaces);
//! - a **gateway** token (a gateway joining the mesh) may sign only for service
//!   `gateway`: gateways are interchangeable at the edge, and the node name a
//!   gateway reports is its own claim, so it would prove nothing in an identity;
//! - other tokens may not sign.
//!
//! Any valid token may follow the trust bundle (it is public); CA rotation steps
//! need an operator token.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures_util::Stream;
use meshgate_control::proto::v1::identity_server::{Identity, IdentityServer};
use meshgate_control::proto::v1::{Bundle, CaRotation, CaStatus, Empty, SignRequest, SignResponse};
use meshgate_control::server::{Scope, Tokens};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::{IssueError, MeshCa, RotateError, TrustBundle};

/// The service the control plane adds to its routes.
pub fn service(
    ca: Arc<MeshCa>,
    tokens: Tokens,
    stopping: watch::Receiver<bool>,
) -> IdentityServer<IdentityApi> {
    IdentityServer::new(IdentityApi {
        ca,
        tokens,
        stopping,
    })
}

pub struct IdentityApi {
    ca: Arc<MeshCa>,
    tokens: Tokens,
    /// Bundle streams end when the server stops (else they hold a graceful stop up).
    stopping: watch::Receiver<bool>,
}

/// May a token of `scope` hold the identity of `service`?
fn entitled(scope: &Scope, service: &str) -> bool {
    match scope {
        Scope::Proxy { role, services } if role == "sidecar" => {
            services.is_empty() || services.iter().any(|s| s == service)
        }
        Scope::Proxy { role, .. } if role == "gateway" => service == "gateway",
        _ => false,
    }
}

fn bundle_message(b: &TrustBundle) -> Bundle {
    Bundle {
        pem: b.pem(),
        version: b.version,
    }
}

type BundleStream = Pin<Box<dyn Stream<Item = Result<Bundle, Status>> + Send>>;

#[tonic::async_trait]
impl Identity for IdentityApi {
    async fn sign(&self, request: Request<SignRequest>) -> Result<Response<SignResponse>, Status> {
        let token = self.tokens.check(&request)?;
        let r = request.get_ref();
        let namespace = if r.namespace.is_empty() {
            "default"
        } else {
            &r.namespace
        };
        if !entitled(&token.scope, &r.service) {
            return Err(Status::permission_denied(format!(
                "token {:?} may not hold the identity of service {:?}",
                token.name, r.service
            )));
        }
        let ttl = (r.requested_ttl_seconds > 0)
            .then(|| Duration::from_secs(u64::from(r.requested_ttl_seconds)));
        let issued = self
            .ca
            .issue(&r.csr_pem, namespace, &r.service, ttl)
            .map_err(|e| match e {
                IssueError::Sign(e) => Status::internal(format!("signing failed: {e}")),
                other => Status::invalid_argument(other.to_string()),
            })?;
        let not_after_unix = issued
            .not_after
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        tracing::info!(spiffe_id = %issued.spiffe_id, not_after_unix, token = %token.name, "workload certificate issued");
        Ok(Response::new(SignResponse {
            cert_chain_pem: issued.chain_pem,
            trust_bundle_pem: self.ca.bundle().pem(),
            not_after_unix,
            spiffe_id: issued.spiffe_id,
        }))
    }

    type TrustBundleStream = BundleStream;

    async fn trust_bundle(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::TrustBundleStream>, Status> {
        self.tokens.check(&request)?;
        let bundles = self.ca.watch_bundle();
        let stopping = self.stopping.clone();
        // The first item is the bundle now; then each change (a watch keeps only
        // the latest, so a slow reader skips straight to it).
        let stream = futures_util::stream::unfold(
            (bundles, stopping, true),
            |(mut bundles, mut stopping, first)| async move {
                if !first {
                    tokio::select! {
                        changed = bundles.changed() => changed.ok()?,
                        _ = stopping.wait_for(|s| *s) => return None,
                    }
                }
                if *stopping.borrow() {
                    return None;
                }
                let message = bundle_message(&bundles.borrow_and_update());
                Some((Ok(message), (bundles, stopping, false)))
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn rotate_ca(&self, request: Request<CaRotation>) -> Result<Response<CaStatus>, Status> {
        let token = self.tokens.operator(&request)?;
        let step = request.get_ref().step.as_str();
        let result = match step {
            "status" | "" => Ok(self.ca.rotation_status()),
            "prepare" => self.ca.prepare_rotation(),
            "activate" => self.ca.activate_rotation(),
            "finish" => self.ca.finish_rotation(),
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown CA rotation step {other:?} (status, prepare, activate, finish)"
                )));
            }
        };
        let status = result.map_err(|e| match e {
            RotateError::Ca(e) => Status::internal(e.to_string()),
            other => Status::failed_precondition(other.to_string()),
        })?;
        if step != "status" && !step.is_empty() {
            tracing::info!(step, token = %token.name, phase = status.phase.as_str(), "mesh CA rotation step");
        }
        Ok(Response::new(CaStatus {
            phase: status.phase.as_str().to_owned(),
            roots: status.roots,
            bundle_version: status.bundle_version,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(role: &str, services: &[&str]) -> Scope {
        Scope::Proxy {
            role: role.into(),
            services: services.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn entitlements() {
        assert!(entitled(&proxy("sidecar", &["orders"]), "orders"));
        assert!(!entitled(&proxy("sidecar", &["orders"]), "payments"));
        assert!(entitled(&proxy("sidecar", &[]), "payments"));
        assert!(entitled(&proxy("gateway", &[]), "gateway"));
        assert!(!entitled(&proxy("gateway", &[]), "orders"));
        assert!(!entitled(&Scope::Operator, "orders"));
        assert!(!entitled(&Scope::Registrar { services: vec![] }, "orders"));
    }
}
