//! ConfigDiscovery: the stream each proxy holds (placeholder until implemented).

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::ControlPlane;
use crate::proto::v1::config_discovery_server::{ConfigDiscovery, ConfigDiscoveryServer};
use crate::proto::v1::{ProxyMessage, Snapshot};

pub fn service(cp: Arc<ControlPlane>) -> ConfigDiscoveryServer<Discovery> {
    ConfigDiscoveryServer::new(Discovery { cp })
}

pub struct Discovery {
    #[allow(dead_code)]
    cp: Arc<ControlPlane>,
}

type SnapshotStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Snapshot, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigDiscovery for Discovery {
    type StreamStream = SnapshotStream;

    async fn stream(
        &self,
        _request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        Err(Status::unimplemented("not yet"))
    }
}
