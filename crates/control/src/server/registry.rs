//! Registry: service instances registering with TTL leases (placeholder until implemented).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::ControlPlane;
use crate::proto::v1::registry_server::{Registry, RegistryServer};
use crate::proto::v1::{Deregistration, Empty, Lease, LeaseRef, Registration};

pub fn service(cp: Arc<ControlPlane>) -> RegistryServer<RegistryApi> {
    RegistryServer::new(RegistryApi { cp })
}

pub struct RegistryApi {
    #[allow(dead_code)]
    cp: Arc<ControlPlane>,
}

#[tonic::async_trait]
impl Registry for RegistryApi {
    async fn register(&self, _r: Request<Registration>) -> Result<Response<Lease>, Status> {
        Err(Status::unimplemented("not yet"))
    }
    async fn heartbeat(&self, _r: Request<LeaseRef>) -> Result<Response<Lease>, Status> {
        Err(Status::unimplemented("not yet"))
    }
    async fn deregister(&self, _r: Request<Deregistration>) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("not yet"))
    }
}
