//! coxswain's `DeviceAttributes` service: the per-device facts v1beta1
//! cannot carry (model, memory, NUMA node, PCIe placement, NVLink island and
//! peers, MIG mode, simulated flag).

use std::sync::Arc;

use coxswain_proto::deviceplugin::v1alpha1::{
    DeviceAttributeSet, GetDeviceAttributesRequest, GetDeviceAttributesResponse, NvlinkPeer,
    device_attributes_server::DeviceAttributes,
};
use tonic::{Request, Response, Status};

use super::PluginState;
use crate::gpu::GpuInfo;
use crate::topology::nvlink_islands;

/// Serves `coxswain.deviceplugin.v1alpha1.DeviceAttributes`.
pub struct DeviceAttributesService {
    state: Arc<PluginState>,
}

impl DeviceAttributesService {
    /// A service over `state`.
    pub fn new(state: Arc<PluginState>) -> Self {
        Self { state }
    }
}

/// The attributes of every GPU, with NVLink islands resolved.
pub fn attribute_sets(gpus: &[GpuInfo], control_nodes: &[String]) -> Vec<DeviceAttributeSet> {
    let islands = nvlink_islands(gpus);
    gpus.iter()
        .map(|g| DeviceAttributeSet {
            id: g.id.clone(),
            index: g.index,
            model: g.model.clone(),
            memory_bytes: g.memory_bytes,
            compute_capability: g.compute_capability.clone(),
            numa_node: g.numa_node.unwrap_or(-1),
            pci_bus_id: g.pci_bus_id.clone(),
            pcie_root: g.pcie_root.clone(),
            nvlink_island: islands.get(&g.id).cloned().unwrap_or_default(),
            nvlink_peers: g
                .nvlink_peers
                .iter()
                .map(|p| NvlinkPeer {
                    id: p.id.clone(),
                    links: p.links,
                })
                .collect(),
            mig_enabled: g.mig_enabled,
            simulated: g.simulated,
            device_nodes: std::iter::once(g.device_node.clone())
                .chain(control_nodes.iter().cloned())
                .collect(),
        })
        .collect()
}

#[tonic::async_trait]
impl DeviceAttributes for DeviceAttributesService {
    async fn get_device_attributes(
        &self,
        _: Request<GetDeviceAttributesRequest>,
    ) -> Result<Response<GetDeviceAttributesResponse>, Status> {
        Ok(Response::new(GetDeviceAttributesResponse {
            resource_name: self.state.resource_name.clone(),
            devices: attribute_sets(&self.state.gpus, &self.state.allocation.control_nodes),
        }))
    }
}
