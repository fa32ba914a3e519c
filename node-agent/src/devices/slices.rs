//! The `resource.k8s.io/v1` ResourceSlice the agent publishes for a resource's
//! healthy devices, built by `coxswain_api::devices::gpu_slice` (the convention the
//! scheduler reads lives in one place, the api crate): driver `gpu.coxswain.dev`, pool named after the node, `spec.nodeName`, one device
//! per GPU named `gpu-<index>` with attributes `uuid` (the device-plugin ID),
//! `index`, `model`, `numaNode`, `nvlinkIsland`, `pcieRoot`, `computeCapability`,
//! `simulated`, `resourceName`, and capacity `memory` (bytes).

use coxswain_api::devices::{GpuDevice, gpu_slice};
use coxswain_api::k8s::ResourceSlice;
use coxswain_proto::deviceplugin::v1alpha1::DeviceAttributeSet;

pub use coxswain_api::devices::GPU_DRIVER;

/// One device as the slice sees it.
#[derive(Debug, Clone, Copy)]
pub struct SliceDevice<'a> {
    /// The device-plugin device ID.
    pub id: &'a str,
    /// Position among the resource's devices sorted by ID: the index when the
    /// plugin serves no attributes.
    pub position: usize,
    /// NUMA node from `ListAndWatch` topology, if any.
    pub numa_node: Option<i64>,
    /// Attributes from the plugin's `DeviceAttributes` service, if it serves it.
    pub attributes: Option<&'a DeviceAttributeSet>,
}

/// The GPU as the API's slice convention describes it.
fn gpu(d: &SliceDevice<'_>) -> GpuDevice {
    let numa = d
        .attributes
        .map(|a| a.numa_node)
        .or(d.numa_node)
        .unwrap_or(0);
    let mut gpu = GpuDevice {
        uuid: d.id.to_string(),
        index: u32::try_from(d.position).unwrap_or(u32::MAX),
        numa_node: u32::try_from(numa).unwrap_or(0),
        ..Default::default()
    };
    if let Some(a) = d.attributes {
        gpu.index = a.index;
        gpu.model = a.model.clone();
        gpu.memory_bytes = a.memory_bytes;
        gpu.nvlink_island = island_number(&a.nvlink_island);
        gpu.pcie_root = a.pcie_root.clone();
        gpu.compute_capability = a.compute_capability.clone();
        gpu.simulated = a.simulated;
    }
    gpu
}

/// The plugin names NVLink islands with a string; the API numbers them: the
/// trailing digits (`nvlink-3` is 3), else 0.
fn island_number(island: &str) -> u32 {
    let digits: String = island
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap_or(0)
}

/// The slice for `resource_name`'s `devices` on `node_name`, built by the API's
/// [`gpu_slice`] so the agent and the scheduler share one convention.
pub fn resource_slice(
    node_name: &str,
    resource_name: &str,
    devices: &[SliceDevice<'_>],
) -> ResourceSlice {
    let gpus: Vec<GpuDevice> = devices.iter().map(gpu).collect();
    gpu_slice(node_name, resource_name, &gpus)
}
