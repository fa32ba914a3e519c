//! The gRPC services on the plugin's socket: the v1beta1 `DevicePlugin`
//! ([`device_plugin`]), coxswain's `DeviceAttributes` ([`attributes`]) and,
//! for simulated GPUs, `SimulatedGpuControl` ([`control`]). They share one
//! [`PluginState`].

pub mod attributes;
pub mod control;
pub mod device_plugin;

use std::sync::Arc;

use crate::allocation::AllocationContext;
use crate::gpu::{GpuBackend, GpuInfo};
use crate::health::{HealthTable, XidLog, XidPolicy};

/// What the services share.
pub struct PluginState {
    /// Resource name the devices are advertised under (`nvidia.com/gpu`).
    pub resource_name: String,
    /// The GPU backend (NVML or simulated).
    pub backend: Arc<dyn GpuBackend>,
    /// The GPUs, in index order.
    pub gpus: Vec<GpuInfo>,
    /// Per-device health.
    pub health: HealthTable,
    /// The XIDs each GPU reported.
    pub xids: XidLog,
    /// Which events are critical.
    pub policy: XidPolicy,
    /// Device nodes, mounts and CDI names for `Allocate`.
    pub allocation: AllocationContext,
}

impl PluginState {
    /// The GPU with this device ID.
    pub fn gpu(&self, id: &str) -> Option<&GpuInfo> {
        self.gpus.iter().find(|g| g.id == id)
    }
}

/// Joins IDs for error messages.
pub(crate) fn id_list(ids: &[&str]) -> String {
    ids.join(", ")
}
