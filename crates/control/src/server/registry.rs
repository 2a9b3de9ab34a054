//! Registry: service instances (or their sidecars) registering themselves with a
//! TTL lease. `Register` needs a registrar token allowed for the service
//! (`Scope::allows_registration`) and a well-formed instance (`host:port`
//! address, TTL 1–300 s, weight 0–10000 where 0 means 1); it answers the lease.
//! `Heartbeat` renews a lease for its TTL, NOT_FOUND once it expired (the instance
//! then registers again); its answer's `ttl_seconds` is 0: the lease keeps the
//! TTL it was granted with. `Deregister` removes the instance at once, or with
//! `drain` keeps it known but sends it no new requests until its lease ends.
//!
//! Heartbeat and Deregister need a registrar token (of any service): the lease id,
//! known only to the instance that registered, names the instance.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::{ControlPlane, Scope, Token};
use crate::proto::v1::registry_server::{Registry, RegistryServer};
use crate::proto::v1::{Deregistration, Empty, Lease, LeaseRef, Registration};
use crate::store::{Instance, StoreError};

/// Longest lease a registration may ask for.
pub const MAX_TTL_SECONDS: u32 = 300;
/// Largest instance weight (as for configured endpoints).
const MAX_WEIGHT: u32 = 10_000;
/// Longest service or instance name.
const MAX_NAME: usize = 253;

pub fn service(cp: Arc<ControlPlane>) -> RegistryServer<RegistryApi> {
    RegistryServer::new(RegistryApi { cp })
}

pub struct RegistryApi {
    cp: Arc<ControlPlane>,
}

impl RegistryApi {
    /// The caller's token if it is a registrar token, else UNAUTHENTICATED or
    /// PERMISSION_DENIED.
    fn registrar<'a, T>(&'a self, request: &Request<T>) -> Result<&'a Token, Status> {
        let token = self.cp.options.tokens.check(request)?;
        match token.scope {
            Scope::Registrar { .. } => Ok(token),
            _ => Err(Status::permission_denied(format!(
                "token {:?} is not a registrar token",
                token.name
            ))),
        }
    }
}

#[tonic::async_trait]
impl Registry for RegistryApi {
    async fn register(&self, request: Request<Registration>) -> Result<Response<Lease>, Status> {
        let token = self.cp.options.tokens.check(&request)?;
        let r = request.get_ref();
        if !token.scope.allows_registration(&r.service) {
            return Err(Status::permission_denied(format!(
                "token {:?} may not register instances of service {:?}",
                token.name, r.service
            )));
        }
        let instance = instance_of(r).map_err(Status::invalid_argument)?;
        let ttl = Duration::from_secs(u64::from(r.ttl_seconds));
        let id = self
            .cp
            .store
            .register(instance, ttl)
            .await
            .map_err(store_status)?;
        tracing::info!(service = %r.service, instance = %r.instance, address = %r.address, ttl_seconds = r.ttl_seconds, token = %token.name, "instance registered");
        Ok(Response::new(Lease {
            id,
            ttl_seconds: r.ttl_seconds,
        }))
    }

    async fn heartbeat(&self, request: Request<LeaseRef>) -> Result<Response<Lease>, Status> {
        self.registrar(&request)?;
        let id = request.into_inner().id;
        self.cp.store.heartbeat(&id).await.map_err(store_status)?;
        Ok(Response::new(Lease { id, ttl_seconds: 0 }))
    }

    async fn deregister(
        &self,
        request: Request<Deregistration>,
    ) -> Result<Response<Empty>, Status> {
        let token = self.registrar(&request)?.name.clone();
        let d = request.into_inner();
        self.cp
            .store
            .deregister(&d.id, d.drain)
            .await
            .map_err(store_status)?;
        tracing::info!(lease = %d.id, drain = d.drain, %token, "instance deregistered");
        Ok(Response::new(Empty {}))
    }
}

fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::LeaseNotFound(_) => Status::not_found(e.to_string()),
        StoreError::Io(_) | StoreError::Etcd(_) => Status::unavailable(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

/// The instance a registration describes, or why it is invalid.
fn instance_of(r: &Registration) -> Result<Instance, String> {
    for (field, value) in [("service", &r.service), ("instance", &r.instance)] {
        if value.is_empty() || value.len() > MAX_NAME {
            return Err(format!("{field} must be 1-{MAX_NAME} characters"));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:[]@".contains(c))
        {
            return Err(format!(
                "{field} {value:?} may only contain letters, digits and -_.:[]@"
            ));
        }
    }
    if let Some(why) = host_port_problem(&r.address) {
        return Err(format!(
            "address {:?}: {why}; expected host:port, e.g. 10.0.0.7:8080 or [fd00::7]:8080",
            r.address
        ));
    }
    if !(1..=MAX_TTL_SECONDS).contains(&r.ttl_seconds) {
        return Err(format!(
            "ttl_seconds must be 1-{MAX_TTL_SECONDS} (got {})",
            r.ttl_seconds
        ));
    }
    if r.weight > MAX_WEIGHT {
        return Err(format!("weight must be 0-{MAX_WEIGHT} (got {})", r.weight));
    }
    Ok(Instance {
        service: r.service.clone(),
        instance: r.instance.clone(),
        address: r.address.clone(),
        weight: r.weight.max(1),
        draining: false,
    })
}

/// Why `addr` is not `host:port` (IPv4, bracketed IPv6 or DNS name; port 1-65535).
fn host_port_problem(addr: &str) -> Option<String> {
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let Some((ip, port)) = rest.split_once("]:") else {
            return Some("missing \"]:port\"".into());
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Some(format!("{ip:?} is not an IPv6 address"));
        }
        (None, port)
    } else {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Some("missing port".into());
        };
        (Some(host), port)
    };
    if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
        return Some(format!("port {port:?} is not 1-65535"));
    }
    let host = host?;
    let dns_name = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    (!dns_name).then(|| format!("host {host:?} is not an IPv4 address or DNS name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(address: &str, ttl_seconds: u32, weight: u32) -> Registration {
        Registration {
            service: "orders".into(),
            instance: "orders-1".into(),
            address: address.into(),
            weight,
            ttl_seconds,
        }
    }

    #[test]
    fn addresses() {
        for ok in [
            "10.0.0.7:8080",
            "[fd00::7]:80",
            "orders.internal:1",
            "localhost:65535",
        ] {
            assert_eq!(host_port_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("10.0.0.7", "missing port"),
            ("10.0.0.7:0", "1-65535"),
            ("10.0.0.7:http", "1-65535"),
            ("[fd00::7]", "missing"),
            ("[nope]:80", "IPv6"),
            ("fd00::7:80", "not an IPv4"),
            (":80", "not an IPv4"),
            ("a b:80", "not an IPv4"),
        ] {
            let got = host_port_problem(bad).unwrap_or_default();
            assert!(got.contains(why), "{bad}: {got:?}");
        }
    }

    #[test]
    fn registrations() {
        let ok = instance_of(&registration("10.0.0.7:80", 10, 0)).unwrap();
        assert_eq!((ok.weight, ok.draining), (1, false), "weight 0 means 1");
        for (r, why) in [
            (
                registration("10.0.0.7:80", 0, 1),
                "ttl_seconds must be 1-300 (got 0)",
            ),
            (
                registration("10.0.0.7:80", 301, 1),
                "ttl_seconds must be 1-300 (got 301)",
            ),
            (
                registration("10.0.0.7:80", 10, 10_001),
                "weight must be 0-10000",
            ),
            (
                registration("10.0.0.7", 10, 1),
                "address \"10.0.0.7\": missing port",
            ),
            (
                Registration {
                    instance: String::new(),
                    ..registration("10.0.0.7:80", 10, 1)
                },
                "instance must be 1-253 characters",
            ),
            (
                Registration {
                    service: "a/b".into(),
                    ..registration("10.0.0.7:80", 10, 1)
                },
                "service \"a/b\" may only contain",
            ),
        ] {
            let got = instance_of(&r).unwrap_err();
            assert!(got.contains(why), "{got}");
        }
    }
}
