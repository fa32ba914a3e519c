//! The Kubernetes device-plugin `v1beta1` service: options, the
//! `ListAndWatch` stream of device health, preferred allocation and
//! `Allocate`, which refuses unknown IDs (InvalidArgument) and unhealthy ones
//! (FailedPrecondition), naming them.

use std::sync::Arc;

use coxswain_proto::deviceplugin::v1beta1::{
    self as v1beta1, AllocateRequest, AllocateResponse, ContainerPreferredAllocationResponse,
    Device, DevicePluginOptions, Empty, ListAndWatchResponse, NumaNode, PreStartContainerRequest,
    PreStartContainerResponse, PreferredAllocationRequest, PreferredAllocationResponse,
    TopologyInfo, device_plugin_server::DevicePlugin,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{PluginState, id_list};
use crate::allocation::preferred_allocation;

/// Serves `v1beta1.DevicePlugin` from a [`PluginState`].
pub struct DevicePluginService {
    state: Arc<PluginState>,
    /// Ends open `ListAndWatch` streams when the socket is torn down.
    shutdown: CancellationToken,
}

impl DevicePluginService {
    /// A service over `state`; its streams end when `shutdown` fires.
    pub fn new(state: Arc<PluginState>, shutdown: CancellationToken) -> Self {
        Self { state, shutdown }
    }
}

/// The device list as `ListAndWatch` sends it.
pub fn device_list(state: &PluginState) -> ListAndWatchResponse {
    let health = state.health.snapshot();
    let devices = state
        .gpus
        .iter()
        .map(|g| Device {
            id: g.id.clone(),
            health: match health.get(&g.id) {
                Some(h) if h.is_healthy() => v1beta1::HEALTHY,
                _ => v1beta1::UNHEALTHY,
            }
            .to_string(),
            topology: g.numa_node.map(|id| TopologyInfo {
                nodes: vec![NumaNode { id }],
            }),
        })
        .collect();
    ListAndWatchResponse { devices }
}

#[tonic::async_trait]
impl DevicePlugin for DevicePluginService {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }))
    }

    type ListAndWatchStream = ReceiverStream<Result<ListAndWatchResponse, Status>>;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let state = self.state.clone();
        let shutdown = self.shutdown.clone();
        let mut changes = state.health.subscribe();
        tokio::spawn(async move {
            loop {
                changes.borrow_and_update();
                if tx.send(Ok(device_list(&state))).await.is_err() {
                    return;
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let container_responses = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|req| {
                let size = usize::try_from(req.allocation_size).map_err(|_| {
                    Status::invalid_argument(format!(
                        "allocation_size {} is negative",
                        req.allocation_size
                    ))
                })?;
                let device_i_ds = preferred_allocation(
                    &self.state.gpus,
                    &req.available_device_i_ds,
                    &req.must_include_device_i_ds,
                    size,
                );
                Ok(ContainerPreferredAllocationResponse { device_i_ds })
            })
            .collect::<Result<_, Status>>()?;
        Ok(Response::new(PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let state = &self.state;
        let mut container_responses = Vec::new();
        for req in request.into_inner().container_requests {
            let ids: Vec<&str> = req.devices_ids.iter().map(String::as_str).collect();
            if ids.is_empty() {
                return Err(Status::invalid_argument(
                    "container request names no device IDs",
                ));
            }
            let unknown: Vec<&str> = ids
                .iter()
                .copied()
                .filter(|id| state.gpu(id).is_none())
                .collect();
            if !unknown.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "unknown device IDs for {}: {}",
                    state.resource_name,
                    id_list(&unknown)
                )));
            }
            let unhealthy: Vec<&str> = ids
                .iter()
                .copied()
                .filter(|id| !state.health.get(id).is_some_and(|h| h.is_healthy()))
                .collect();
            if !unhealthy.is_empty() {
                return Err(Status::failed_precondition(format!(
                    "unhealthy devices cannot be allocated: {}",
                    id_list(&unhealthy)
                )));
            }
            let gpus: Vec<_> = ids.iter().filter_map(|id| state.gpu(id)).collect();
            tracing::info!(devices = %id_list(&ids), simulated = state.backend.simulated(), "allocate");
            container_responses.push(state.allocation.container_response(&gpus));
        }
        Ok(Response::new(AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}
