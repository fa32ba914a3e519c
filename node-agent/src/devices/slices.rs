//! The `resource.k8s.io/v1` ResourceSlice the agent publishes for a resource's
//! healthy devices. One function builds it, so the convention lives in one place:
//! driver `gpu.coxswain.dev`, pool named after the node, `spec.nodeName`, one device
//! per GPU named `gpu-<index>` with attributes `uuid` (the device-plugin ID),
//! `index`, `model`, `numaNode`, `nvlinkIsland`, `pcieRoot`, `computeCapability`,
//! `simulated`, `resourceName`, and capacity `memory` (bytes).

use std::collections::BTreeMap;

use coxswain_api::k8s::{ResourceSlice, ResourceSliceSpec};
use coxswain_proto::deviceplugin::v1alpha1::DeviceAttributeSet;
use k8s_openapi::api::resource::v1::{Device, DeviceAttribute, DeviceCapacity, ResourcePool};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The DRA driver name of coxswain's GPU slices.
pub const GPU_DRIVER: &str = "gpu.coxswain.dev";

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

fn string(s: &str) -> DeviceAttribute {
    DeviceAttribute {
        string: Some(s.to_string()),
        ..Default::default()
    }
}

fn int(i: i64) -> DeviceAttribute {
    DeviceAttribute {
        int: Some(i),
        ..Default::default()
    }
}

fn device(resource_name: &str, d: &SliceDevice<'_>) -> Device {
    let index = d
        .attributes
        .map_or(d.position as i64, |a| i64::from(a.index));
    let mut attributes = BTreeMap::from([
        ("uuid".to_string(), string(d.id)),
        ("index".to_string(), int(index)),
        ("resourceName".to_string(), string(resource_name)),
    ]);
    let numa = d
        .attributes
        .map(|a| a.numa_node)
        .or(d.numa_node)
        .unwrap_or(-1);
    attributes.insert("numaNode".into(), int(numa));
    let mut capacity = BTreeMap::new();
    if let Some(a) = d.attributes {
        attributes.insert("model".into(), string(&a.model));
        attributes.insert("nvlinkIsland".into(), string(&a.nvlink_island));
        attributes.insert("pcieRoot".into(), string(&a.pcie_root));
        attributes.insert("computeCapability".into(), string(&a.compute_capability));
        attributes.insert(
            "simulated".into(),
            DeviceAttribute {
                bool: Some(a.simulated),
                ..Default::default()
            },
        );
        capacity.insert(
            "memory".to_string(),
            DeviceCapacity {
                value: Quantity(a.memory_bytes.to_string()),
                ..Default::default()
            },
        );
    }
    Device {
        name: format!("gpu-{index}"),
        attributes: Some(attributes),
        capacity: (!capacity.is_empty()).then_some(capacity),
        ..Default::default()
    }
}

/// The slice for `resource_name`'s `devices` on `node_name`.
pub fn resource_slice(
    node_name: &str,
    resource_name: &str,
    devices: &[SliceDevice<'_>],
) -> ResourceSlice {
    let suffix: String = resource_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    ResourceSlice {
        metadata: ObjectMeta {
            name: Some(format!("{node_name}-{}", suffix.to_ascii_lowercase())),
            ..Default::default()
        },
        spec: ResourceSliceSpec {
            driver: GPU_DRIVER.to_string(),
            node_name: Some(node_name.to_string()),
            pool: ResourcePool {
                name: node_name.to_string(),
                generation: 0,
                resource_slice_count: 1,
            },
            devices: Some(devices.iter().map(|d| device(resource_name, d)).collect()),
            ..Default::default()
        },
    }
}
