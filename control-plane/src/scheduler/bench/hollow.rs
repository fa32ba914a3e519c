//! Hollow nodes: nodes built from a machine template, with GPUs, NUMA and NVLink
//! topology, placed in switches, racks and blocks through node labels.

use coxswain_api::coxswain::TopologyLevel;
use serde::Serialize;

use super::super::model::{GpuDevice, NodeInfo, Resources};

/// A machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeTemplate {
    /// NVIDIA DGX H100: 8 × H100 on one NVSwitch (one NVLink island), 2 NUMA nodes.
    DgxH100,
    /// NVIDIA DGX A100: 8 × A100 on one NVSwitch, 2 NUMA nodes.
    DgxA100,
    /// A PCIe server: GPUs in NVLink-bridged pairs, 2 NUMA nodes.
    Pcie,
}

/// Nodes per rack.
pub const RACK_SIZE: usize = 32;
/// Racks per block.
pub const BLOCK_RACKS: usize = 8;
/// Nodes per leaf switch (two leaf switches per rack).
pub const SWITCH_SIZE: usize = 16;

/// Node `index` of a hollow cluster built from `template` with `gpus` GPUs.
pub fn hollow_node(template: NodeTemplate, index: usize, gpus: usize) -> NodeInfo {
    let model = match template {
        NodeTemplate::DgxH100 => "NVIDIA H100 80GB HBM3",
        NodeTemplate::DgxA100 => "NVIDIA A100-SXM4-80GB",
        NodeTemplate::Pcie => "NVIDIA L40S",
    };
    let name = format!("node-{index:05}");
    let per_numa = gpus.div_ceil(2).max(1);
    let devices = (0..gpus)
        .map(|g| {
            let island = match template {
                NodeTemplate::Pcie => (g / 2) as u16,
                _ => 0,
            };
            GpuDevice::new(
                format!("GPU-{index:05}-{g}"),
                model,
                (g / per_numa) as u8,
                island,
            )
        })
        .collect();
    let mut node = NodeInfo::new(name.clone(), Resources::new(224_000, 2 << 40, 110), devices);
    let rack = index / RACK_SIZE;
    let labels = [
        (
            TopologyLevel::Block.node_label(),
            format!("block-{}", rack / BLOCK_RACKS),
        ),
        (TopologyLevel::Rack.node_label(), format!("rack-{rack}")),
        (
            TopologyLevel::Switch.node_label(),
            format!("switch-{}", index / SWITCH_SIZE),
        ),
        (TopologyLevel::Node.node_label(), name),
        ("nvidia.com/gpu.product", model.replace(' ', "-")),
    ];
    for (k, v) in labels {
        node.labels.insert(k.to_string(), v);
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dgx_has_one_island_two_numa_and_topology_labels() {
        let n = hollow_node(NodeTemplate::DgxH100, 300, 8);
        assert_eq!(n.gpus.len(), 8);
        assert!(n.gpus.iter().all(|d| d.island == 0));
        assert_eq!(n.gpus.iter().filter(|d| d.numa == 1).count(), 4);
        assert_eq!(n.labels["topology.coxswain.dev/rack"], "rack-9");
        assert_eq!(n.labels["topology.coxswain.dev/block"], "block-1");
        let p = hollow_node(NodeTemplate::Pcie, 0, 8);
        assert_eq!(p.largest_idle_island(&[]), 2);
    }
}
