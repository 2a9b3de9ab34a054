//! Operator: plan, apply, rollback, history, status (placeholder until implemented).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::ControlPlane;
use crate::proto::v1::operator_server::{Operator, OperatorServer};
use crate::proto::v1::{
    ApplyRequest, ApplyResult, Document, Empty, HistoryResult, PlanResult, RollbackRequest,
    StatusResult,
};

pub fn service(cp: Arc<ControlPlane>) -> OperatorServer<OperatorApi> {
    OperatorServer::new(OperatorApi { cp })
}

pub struct OperatorApi {
    #[allow(dead_code)]
    cp: Arc<ControlPlane>,
}

#[tonic::async_trait]
impl Operator for OperatorApi {
    async fn plan(&self, _r: Request<Document>) -> Result<Response<PlanResult>, Status> {
        Err(Status::unimplemented("not yet"))
    }
    async fn apply(&self, _r: Request<ApplyRequest>) -> Result<Response<ApplyResult>, Status> {
        Err(Status::unimplemented("not yet"))
    }
    async fn rollback(
        &self,
        _r: Request<RollbackRequest>,
    ) -> Result<Response<ApplyResult>, Status> {
        Err(Status::unimplemented("not yet"))
    }
    async fn history(&self, _r: Request<Empty>) -> Result<Response<HistoryResult>, Status> {
        Err(Status::unimplemented("not yet"))
    }
    async fn status(&self, _r: Request<Empty>) -> Result<Response<StatusResult>, Status> {
        Err(Status::unimplemented("not yet"))
    }
}
