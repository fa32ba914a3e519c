//! The GPU inventory convention: a node's GPUs published as a `resource.k8s.io/v1`
//! [`ResourceSlice`], written by the node agent's device manager and read by the scheduler.
//!
//! One slice per node and extended resource: driver [`GPU_DRIVER`], pool named after the
//! node, `spec.nodeName` set, and one device per GPU named `gpu-<index>` carrying the
//! attributes below and the capacity [`CAPACITY_MEMORY`]. The `uuid` attribute is the
//! device plugin's device ID: the scheduler writes it into the pod's GPU-devices
//! annotation and the agent passes it to the plugin's `Allocate`. Unhealthy GPUs are left
//! out of the slice (as in DRA) rather than flagged.

use std::collections::BTreeMap;

use k8s_openapi::api::resource::v1::{
    Device, DeviceAttribute, DeviceCapacity, ResourcePool, ResourceSlice, ResourceSliceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::quantity::parse_quantity;
use crate::validation::{FieldError, FieldPath};

/// The driver name of coxswain's GPU slices.
pub const GPU_DRIVER: &str = "gpu.coxswain.dev";
/// Attribute: the device plugin's device ID (`GPU-<uuid>`), string.
pub const ATTR_UUID: &str = "uuid";
/// Attribute: the GPU's index on the node, int.
pub const ATTR_INDEX: &str = "index";
/// Attribute: product name, string.
pub const ATTR_MODEL: &str = "model";
/// Attribute: NUMA node of the GPU's PCIe root, int.
pub const ATTR_NUMA_NODE: &str = "numaNode";
/// Attribute: NVLink island (GPUs with equal numbers share NVLink/NVSwitch), int.
pub const ATTR_NVLINK_ISLAND: &str = "nvlinkIsland";
/// Attribute: PCIe root complex, string.
pub const ATTR_PCIE_ROOT: &str = "pcieRoot";
/// Attribute: CUDA compute capability (`9.0`), version or string.
pub const ATTR_COMPUTE_CAPABILITY: &str = "computeCapability";
/// Attribute: whether the GPU is simulated (no hardware behind it), bool.
pub const ATTR_SIMULATED: &str = "simulated";
/// Attribute: the extended resource the GPU is advertised as (`nvidia.com/gpu`), string.
pub const ATTR_RESOURCE_NAME: &str = "resourceName";
/// Capacity: device memory, quantity.
pub const CAPACITY_MEMORY: &str = "memory";

/// One GPU of a node, as the inventory carries it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuDevice {
    /// The device plugin's device ID (`GPU-<uuid>`).
    pub uuid: String,
    /// Index on the node (device name `gpu-<index>`).
    pub index: u32,
    /// Product name, e.g. `NVIDIA H100 80GB HBM3`.
    pub model: String,
    /// Device memory in bytes.
    pub memory_bytes: u64,
    /// NUMA node of the GPU's PCIe root.
    pub numa_node: u32,
    /// NVLink island.
    pub nvlink_island: u32,
    /// PCIe root complex (`pci0000:00`).
    pub pcie_root: String,
    /// CUDA compute capability (`9.0`).
    pub compute_capability: String,
    /// Whether the GPU is simulated.
    pub simulated: bool,
    /// The extended resource it is advertised as (`nvidia.com/gpu`).
    pub resource_name: String,
}

/// The slice's object name for `node` and extended resource `resource`
/// (`node-a-nvidia.com-gpu`).
pub fn slice_name(node: &str, resource: &str) -> String {
    format!("{node}-{}", resource.replace('/', "-"))
}

fn string(value: &str) -> DeviceAttribute {
    DeviceAttribute {
        string: Some(value.to_string()),
        ..Default::default()
    }
}

fn int(value: u32) -> DeviceAttribute {
    DeviceAttribute {
        int: Some(i64::from(value)),
        ..Default::default()
    }
}

/// A [`ResourceSlice`] publishing `gpus` of `node` as extended resource `resource`.
pub fn gpu_slice(node: &str, resource: &str, gpus: &[GpuDevice]) -> ResourceSlice {
    let devices = gpus
        .iter()
        .map(|g| {
            let mut attributes = BTreeMap::from([
                (ATTR_UUID.to_string(), string(&g.uuid)),
                (ATTR_INDEX.to_string(), int(g.index)),
                (ATTR_MODEL.to_string(), string(&g.model)),
                (ATTR_NUMA_NODE.to_string(), int(g.numa_node)),
                (ATTR_NVLINK_ISLAND.to_string(), int(g.nvlink_island)),
                (ATTR_PCIE_ROOT.to_string(), string(&g.pcie_root)),
                (
                    ATTR_SIMULATED.to_string(),
                    DeviceAttribute {
                        bool: Some(g.simulated),
                        ..Default::default()
                    },
                ),
                (ATTR_RESOURCE_NAME.to_string(), string(resource)),
            ]);
            if !g.compute_capability.is_empty() {
                attributes.insert(
                    ATTR_COMPUTE_CAPABILITY.to_string(),
                    string(&g.compute_capability),
                );
            }
            let capacity = BTreeMap::from([(
                CAPACITY_MEMORY.to_string(),
                DeviceCapacity {
                    value: Quantity(g.memory_bytes.to_string()),
                    request_policy: None,
                },
            )]);
            Device {
                name: format!("gpu-{}", g.index),
                attributes: Some(attributes),
                capacity: Some(capacity),
                ..Default::default()
            }
        })
        .collect();
    ResourceSlice {
        metadata: ObjectMeta {
            name: Some(slice_name(node, resource)),
            ..Default::default()
        },
        spec: ResourceSliceSpec {
            driver: GPU_DRIVER.to_string(),
            pool: ResourcePool {
                name: node.to_string(),
                generation: 0,
                resource_slice_count: 1,
            },
            node_name: Some(node.to_string()),
            devices: Some(devices),
            ..Default::default()
        },
    }
}

/// The GPUs a slice of driver [`GPU_DRIVER`] publishes; the first malformed field is named.
pub fn gpus_from_slice(slice: &ResourceSlice) -> Result<Vec<GpuDevice>, FieldError> {
    let spec = FieldPath::new("spec");
    if slice.spec.driver != GPU_DRIVER {
        return Err(FieldError::not_supported(
            &spec.child("driver"),
            &slice.spec.driver,
            &[GPU_DRIVER],
        ));
    }
    let mut gpus = Vec::new();
    for (i, device) in slice.spec.devices.iter().flatten().enumerate() {
        let path = spec.child("devices").index(i);
        gpus.push(gpu_from_device(device, &path)?);
    }
    Ok(gpus)
}

fn gpu_from_device(device: &Device, path: &FieldPath) -> Result<GpuDevice, FieldError> {
    let empty = BTreeMap::new();
    let attrs = device.attributes.as_ref().unwrap_or(&empty);
    let at = |name: &str| path.child("attributes").key(name);
    let get = |name: &str| attrs.get(name);
    let text = |name: &str, required: bool| -> Result<String, FieldError> {
        match get(name) {
            Some(DeviceAttribute {
                string: Some(s), ..
            }) => Ok(s.clone()),
            Some(DeviceAttribute {
                version: Some(v), ..
            }) => Ok(v.clone()),
            Some(_) => Err(FieldError::invalid(&at(name), "must be a string attribute")),
            None if required => Err(FieldError::required(&at(name), "is required")),
            None => Ok(String::new()),
        }
    };
    let number = |name: &str, required: bool| -> Result<u32, FieldError> {
        match get(name) {
            Some(DeviceAttribute { int: Some(n), .. }) => u32::try_from(*n)
                .map_err(|_| FieldError::invalid(&at(name), format!("{n} is out of range"))),
            Some(_) => Err(FieldError::invalid(&at(name), "must be an int attribute")),
            None if required => Err(FieldError::required(&at(name), "is required")),
            None => Ok(0),
        }
    };
    let uuid = text(ATTR_UUID, true)?;
    if uuid.is_empty() {
        return Err(FieldError::invalid(&at(ATTR_UUID), "must not be empty"));
    }
    let simulated = match get(ATTR_SIMULATED) {
        Some(DeviceAttribute { bool: Some(b), .. }) => *b,
        Some(_) => {
            return Err(FieldError::invalid(
                &at(ATTR_SIMULATED),
                "must be a bool attribute",
            ));
        }
        None => false,
    };
    let memory_bytes = match device
        .capacity
        .as_ref()
        .and_then(|c| c.get(CAPACITY_MEMORY))
    {
        Some(c) => {
            let field = path.child("capacity").key(CAPACITY_MEMORY);
            let q =
                parse_quantity(&c.value).map_err(|e| FieldError::invalid(&field, e.to_string()))?;
            u64::try_from(q.ceil_units())
                .map_err(|_| FieldError::invalid(&field, "must not be negative"))?
        }
        None => 0,
    };
    Ok(GpuDevice {
        uuid,
        index: number(ATTR_INDEX, true)?,
        model: text(ATTR_MODEL, false)?,
        memory_bytes,
        numa_node: number(ATTR_NUMA_NODE, false)?,
        nvlink_island: number(ATTR_NVLINK_ISLAND, false)?,
        pcie_root: text(ATTR_PCIE_ROOT, false)?,
        compute_capability: text(ATTR_COMPUTE_CAPABILITY, false)?,
        simulated,
        resource_name: text(ATTR_RESOURCE_NAME, false)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32) -> GpuDevice {
        GpuDevice {
            uuid: format!("GPU-0000-{index}"),
            index,
            model: "NVIDIA H100 80GB HBM3".into(),
            memory_bytes: 80 << 30,
            numa_node: index / 4,
            nvlink_island: index / 4,
            pcie_root: format!("pci0000:{index:02x}"),
            compute_capability: "9.0".into(),
            simulated: true,
            resource_name: "nvidia.com/gpu".into(),
        }
    }

    #[test]
    fn slice_round_trips_through_json() {
        let gpus: Vec<GpuDevice> = (0..8).map(gpu).collect();
        let slice = gpu_slice("node-a", "nvidia.com/gpu", &gpus);
        assert_eq!(
            slice.metadata.name.as_deref(),
            Some("node-a-nvidia.com-gpu")
        );
        assert_eq!(slice.spec.pool.name, "node-a");
        assert_eq!(slice.spec.node_name.as_deref(), Some("node-a"));
        let devices = slice.spec.devices.as_ref().unwrap();
        assert_eq!(devices[3].name, "gpu-3");
        let json = serde_json::to_value(&slice).unwrap();
        assert_eq!(
            json.pointer("/spec/devices/5/attributes/nvlinkIsland/int"),
            Some(&serde_json::json!(1))
        );
        let back: ResourceSlice = serde_json::from_value(json).unwrap();
        assert_eq!(gpus_from_slice(&back).unwrap(), gpus);
    }

    #[test]
    fn malformed_slices_name_the_field() {
        let mut slice = gpu_slice("n", "nvidia.com/gpu", &[gpu(0)]);
        slice.spec.driver = "other.example.com".into();
        let err = gpus_from_slice(&slice).unwrap_err();
        assert!(err.to_string().contains("spec.driver"), "{err}");

        let broken = |name: &str, value: Option<DeviceAttribute>| {
            let mut slice = gpu_slice("n", "nvidia.com/gpu", &[gpu(0), gpu(1)]);
            let attrs = slice.spec.devices.as_mut().unwrap()[1]
                .attributes
                .as_mut()
                .unwrap();
            match value {
                Some(v) => attrs.insert(name.into(), v),
                None => attrs.remove(name),
            };
            gpus_from_slice(&slice).unwrap_err().to_string()
        };
        let err = broken(ATTR_NVLINK_ISLAND, Some(string("zero")));
        assert!(
            err.contains("spec.devices[1].attributes[nvlinkIsland]"),
            "{err}"
        );
        let err = broken(ATTR_UUID, None);
        assert!(err.contains("spec.devices[1].attributes[uuid]"), "{err}");
    }

    #[test]
    fn compute_capability_may_be_a_version() {
        let mut slice = gpu_slice("n", "nvidia.com/gpu", &[gpu(0)]);
        let attrs = slice.spec.devices.as_mut().unwrap()[0]
            .attributes
            .as_mut()
            .unwrap();
        attrs.insert(
            ATTR_COMPUTE_CAPABILITY.into(),
            DeviceAttribute {
                version: Some("8.0.0".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            gpus_from_slice(&slice).unwrap()[0].compute_capability,
            "8.0.0"
        );
    }
}
