//! The `Allocate` answer for one container: device nodes (the GPUs' own and
//! the control nodes) with `rw` cgroup permission, `NVIDIA_VISIBLE_DEVICES`
//! and `CUDA_VISIBLE_DEVICES` by UUID, driver library mounts on real GPUs,
//! or, where a CDI spec names every allocated GPU, CDI device names instead
//! of nodes and mounts (the spec carries them).

use std::collections::BTreeMap;
use std::path::Path;

use coxswain_proto::deviceplugin::v1beta1::{
    CdiDevice, ContainerAllocateResponse, DeviceSpec, Mount,
};

use super::CdiIndex;
use crate::gpu::{GpuInfo, HostMount};

/// Annotation set on containers that got simulated GPUs.
pub const SIMULATED_ANNOTATION: &str = "coxswain.dev/simulated-gpus";
/// Environment variable set in containers that got simulated GPUs.
pub const SIMULATED_ENV: &str = "COXSWAIN_SIMULATED_GPUS";

/// What `Allocate` needs besides the chosen GPUs.
#[derive(Debug, Clone, Default)]
pub struct AllocationContext {
    /// Control nodes every GPU container gets (`/dev/nvidiactl`, …).
    pub control_nodes: Vec<String>,
    /// Driver files mounted read-only.
    pub driver_mounts: Vec<HostMount>,
    /// CDI names for GPUs, where specs exist.
    pub cdi: CdiIndex,
}

/// Container path of a host device node: `/dev/<file name>`, so simulated
/// nodes kept elsewhere on the host appear where CUDA looks for them.
fn container_dev_path(host: &str) -> String {
    Path::new(host)
        .file_name()
        .map(|n| format!("/dev/{}", n.to_string_lossy()))
        .unwrap_or_else(|| host.to_string())
}

fn device_spec(host: &str) -> DeviceSpec {
    DeviceSpec {
        container_path: container_dev_path(host),
        host_path: host.to_string(),
        permissions: "rw".to_string(),
    }
}

impl AllocationContext {
    /// The response for a container given `gpus` (already validated).
    pub fn container_response(&self, gpus: &[&GpuInfo]) -> ContainerAllocateResponse {
        let uuids = gpus
            .iter()
            .map(|g| g.id.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let mut envs = BTreeMap::from([
            ("NVIDIA_VISIBLE_DEVICES".to_string(), uuids.clone()),
            ("CUDA_VISIBLE_DEVICES".to_string(), uuids),
        ]);
        let mut annotations = BTreeMap::new();
        let simulated = gpus.iter().any(|g| g.simulated);
        if simulated {
            envs.insert(SIMULATED_ENV.to_string(), "true".to_string());
            annotations.insert(SIMULATED_ANNOTATION.to_string(), "true".to_string());
        }
        let cdi_names: Option<Vec<String>> = gpus.iter().map(|g| self.cdi.name_for(g)).collect();
        if let Some(names) = cdi_names.filter(|n| !n.is_empty()) {
            return ContainerAllocateResponse {
                envs: envs.into_iter().collect(),
                annotations: annotations.into_iter().collect(),
                cdi_devices: names.into_iter().map(|name| CdiDevice { name }).collect(),
                ..Default::default()
            };
        }
        let devices = gpus
            .iter()
            .map(|g| g.device_node.as_str())
            .chain(self.control_nodes.iter().map(String::as_str))
            .map(device_spec)
            .collect();
        let mounts = if simulated {
            Vec::new()
        } else {
            self.driver_mounts
                .iter()
                .map(|m| Mount {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.clone(),
                    read_only: true,
                })
                .collect()
        };
        ContainerAllocateResponse {
            envs: envs.into_iter().collect(),
            mounts,
            devices,
            annotations: annotations.into_iter().collect(),
            cdi_devices: Vec::new(),
        }
    }
}
