//! `SimulatedGpuControl`: XID injection and recovery for simulated GPUs,
//! driving the same health monitor that NVML events drive. Real GPUs refuse
//! with FailedPrecondition.

use std::sync::Arc;

use coxswain_proto::deviceplugin::v1alpha1::{
    InjectXidRequest, InjectXidResponse, RecoverRequest, RecoverResponse,
    simulated_gpu_control_server::SimulatedGpuControl,
};
use tonic::{Request, Response, Status};

use super::PluginState;
use crate::Error;
use crate::gpu::HealthEventKind;

/// Serves `coxswain.deviceplugin.v1alpha1.SimulatedGpuControl`.
pub struct SimulatedGpuControlService {
    state: Arc<PluginState>,
}

impl SimulatedGpuControlService {
    /// A service over `state`.
    pub fn new(state: Arc<PluginState>) -> Self {
        Self { state }
    }
}

fn to_status(e: Error) -> Status {
    match e {
        Error::UnknownDevice(_) => Status::not_found(e.to_string()),
        Error::NotSimulated(_) => Status::failed_precondition(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

#[tonic::async_trait]
impl SimulatedGpuControl for SimulatedGpuControlService {
    async fn inject_xid(
        &self,
        request: Request<InjectXidRequest>,
    ) -> Result<Response<InjectXidResponse>, Status> {
        let req = request.into_inner();
        let xid = u64::from(req.xid);
        self.state
            .backend
            .inject_xid(&req.device_id, xid)
            .map_err(to_status)?;
        Ok(Response::new(InjectXidResponse {
            marked_unhealthy: self.state.policy.is_critical(HealthEventKind::Xid(xid)),
        }))
    }

    async fn recover(
        &self,
        request: Request<RecoverRequest>,
    ) -> Result<Response<RecoverResponse>, Status> {
        let req = request.into_inner();
        self.state
            .backend
            .recover(&req.device_id)
            .map_err(to_status)?;
        Ok(Response::new(RecoverResponse {}))
    }
}
