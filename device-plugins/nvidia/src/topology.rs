//! Simulated machine layouts with the NVLink and NUMA wiring of the real
//! machines they are named after, and NVLink islands (connected components
//! of the NVLink graph) for real and simulated GPUs alike.

use std::collections::BTreeMap;
use std::path::Path;

use crate::Error;
use crate::gpu::{GpuInfo, NvlinkPeer};

/// A simulated machine selected with `--simulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// DGX H100: 8 × H100 SXM5 80 GB, NVSwitch all-to-all (18 links each),
    /// GPUs 0-3 on NUMA 0, 4-7 on NUMA 1.
    DgxH100,
    /// DGX A100: 8 × A100 SXM4 80 GB, NVSwitch all-to-all (12 links each),
    /// NPS4: GPU pairs on NUMA nodes 3, 1, 7, 5.
    DgxA100,
    /// 8 × A100 PCIe 80 GB with NVLink bridges joining GPUs in pairs
    /// (0-1, 2-3, 4-5, 6-7), GPUs 0-3 on NUMA 0, 4-7 on NUMA 1.
    Pcie8xNvlinkPairs,
    /// DGX-1 with 8 × V100 SXM2 32 GB in the hybrid cube-mesh (6 links each).
    Dgx1V100,
    /// 4 × L4 on PCIe, no NVLink, GPUs 0-1 on NUMA 0, 2-3 on NUMA 1.
    Pcie4x,
}

struct Layout {
    model: &'static str,
    memory_gib: u64,
    compute_capability: &'static str,
    /// (PCI bus number, NUMA node) per GPU.
    slots: &'static [(u32, i64)],
    /// (gpu a, gpu b, links) undirected.
    links: Vec<(u32, u32, u32)>,
}

const DGX1_V100_LINKS: &[(u32, u32, u32)] = &[
    (0, 1, 1),
    (0, 2, 1),
    (0, 3, 2),
    (0, 4, 2),
    (1, 2, 2),
    (1, 3, 1),
    (1, 5, 2),
    (2, 3, 2),
    (2, 6, 1),
    (3, 7, 1),
    (4, 5, 1),
    (4, 6, 1),
    (4, 7, 2),
    (5, 6, 2),
    (5, 7, 1),
    (6, 7, 2),
];

fn all_to_all(n: u32, links: u32) -> Vec<(u32, u32, u32)> {
    (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b, links)))
        .collect()
}

impl Topology {
    /// The names accepted by `--simulate`.
    pub const NAMES: &'static [&'static str] = &[
        "dgx-h100",
        "dgx-a100",
        "pcie-8x-nvlink-pairs",
        "dgx1-v100",
        "pcie-4x",
    ];

    /// Parses a `--simulate` value.
    pub fn parse(name: &str) -> Result<Self, Error> {
        Ok(match name {
            "dgx-h100" => Topology::DgxH100,
            "dgx-a100" => Topology::DgxA100,
            "pcie-8x-nvlink-pairs" | "pcie-8x" => Topology::Pcie8xNvlinkPairs,
            "dgx1-v100" => Topology::Dgx1V100,
            "pcie-4x" => Topology::Pcie4x,
            other => return Err(Error::UnknownTopology(other.to_string())),
        })
    }

    /// The `--simulate` name of this topology.
    pub fn name(self) -> &'static str {
        match self {
            Topology::DgxH100 => "dgx-h100",
            Topology::DgxA100 => "dgx-a100",
            Topology::Pcie8xNvlinkPairs => "pcie-8x-nvlink-pairs",
            Topology::Dgx1V100 => "dgx1-v100",
            Topology::Pcie4x => "pcie-4x",
        }
    }

    fn layout(self) -> Layout {
        match self {
            Topology::DgxH100 => Layout {
                model: "NVIDIA H100 80GB HBM3",
                memory_gib: 80,
                compute_capability: "9.0",
                slots: &[
                    (0x1b, 0),
                    (0x43, 0),
                    (0x52, 0),
                    (0x61, 0),
                    (0x9d, 1),
                    (0xc3, 1),
                    (0xd1, 1),
                    (0xdf, 1),
                ],
                links: all_to_all(8, 18),
            },
            Topology::DgxA100 => Layout {
                model: "NVIDIA A100-SXM4-80GB",
                memory_gib: 80,
                compute_capability: "8.0",
                slots: &[
                    (0x07, 3),
                    (0x0f, 3),
                    (0x47, 1),
                    (0x4e, 1),
                    (0x87, 7),
                    (0x90, 7),
                    (0xb7, 5),
                    (0xbd, 5),
                ],
                links: all_to_all(8, 12),
            },
            Topology::Pcie8xNvlinkPairs => Layout {
                model: "NVIDIA A100 80GB PCIe",
                memory_gib: 80,
                compute_capability: "8.0",
                slots: &[
                    (0x17, 0),
                    (0x18, 0),
                    (0x31, 0),
                    (0x32, 0),
                    (0x98, 1),
                    (0x99, 1),
                    (0xb1, 1),
                    (0xb2, 1),
                ],
                links: vec![(0, 1, 12), (2, 3, 12), (4, 5, 12), (6, 7, 12)],
            },
            Topology::Dgx1V100 => Layout {
                model: "Tesla V100-SXM2-32GB",
                memory_gib: 32,
                compute_capability: "7.0",
                slots: &[
                    (0x06, 0),
                    (0x07, 0),
                    (0x0a, 0),
                    (0x0b, 0),
                    (0x85, 1),
                    (0x86, 1),
                    (0x89, 1),
                    (0x8a, 1),
                ],
                links: DGX1_V100_LINKS.to_vec(),
            },
            Topology::Pcie4x => Layout {
                model: "NVIDIA L4",
                memory_gib: 24,
                compute_capability: "8.9",
                slots: &[(0x17, 0), (0x31, 0), (0x98, 1), (0xb1, 1)],
                links: Vec::new(),
            },
        }
    }

    /// The simulated GPUs, their device nodes under `dev_dir` (`nvidiaN`).
    pub fn gpus(self, dev_dir: &Path) -> Vec<GpuInfo> {
        let layout = self.layout();
        let tag = self as u32;
        let id = |i: u32| format!("GPU-5140{tag:04x}-c0c5-4000-8000-{i:012x}");
        let mut gpus: Vec<GpuInfo> = layout
            .slots
            .iter()
            .zip(0u32..)
            .map(|(&(bus, numa), i)| GpuInfo {
                id: id(i),
                index: i,
                minor: i,
                model: layout.model.to_string(),
                memory_bytes: layout.memory_gib << 30,
                compute_capability: layout.compute_capability.to_string(),
                numa_node: Some(numa),
                pci_bus_id: format!("0000:{bus:02x}:00.0"),
                // GPUs 2k and 2k+1 share a PCIe switch under one root complex.
                pcie_root: format!(
                    "pci0000:{:02x}",
                    layout.slots[(i & !1) as usize].0.saturating_sub(1)
                ),
                nvlink_peers: Vec::new(),
                mig_enabled: false,
                simulated: true,
                device_node: dev_dir.join(format!("nvidia{i}")).display().to_string(),
            })
            .collect();
        for &(a, b, links) in &layout.links {
            let (ida, idb) = (id(a), id(b));
            gpus[a as usize]
                .nvlink_peers
                .push(NvlinkPeer { id: idb, links });
            gpus[b as usize]
                .nvlink_peers
                .push(NvlinkPeer { id: ida, links });
        }
        gpus
    }
}

/// NVLink islands: device ID → island name (`nvlink-<lowest index>`), for
/// GPUs with at least one NVLink peer. GPUs without peers have no island.
pub fn nvlink_islands(gpus: &[GpuInfo]) -> BTreeMap<String, String> {
    let by_id: BTreeMap<&str, &GpuInfo> = gpus.iter().map(|g| (g.id.as_str(), g)).collect();
    let mut islands = BTreeMap::new();
    let mut sorted: Vec<&GpuInfo> = gpus.iter().collect();
    sorted.sort_by_key(|g| g.index);
    for start in sorted {
        if start.nvlink_peers.is_empty() || islands.contains_key(&start.id) {
            continue;
        }
        let name = format!("nvlink-{}", start.index);
        let mut stack = vec![start];
        while let Some(gpu) = stack.pop() {
            if islands.insert(gpu.id.clone(), name.clone()).is_some() {
                continue;
            }
            for peer in &gpu.nvlink_peers {
                if let Some(next) = by_id.get(peer.id.as_str())
                    && !islands.contains_key(&next.id)
                {
                    stack.push(next);
                }
            }
        }
    }
    islands
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topology_parses_and_is_symmetric() {
        for name in Topology::NAMES {
            let gpus = Topology::parse(name).unwrap().gpus(Path::new("/dev/sim"));
            for g in &gpus {
                assert!(g.simulated && g.id.len() <= 63);
                for p in &g.nvlink_peers {
                    let peer = gpus.iter().find(|o| o.id == p.id).unwrap();
                    assert_eq!(peer.links_to(&g.id), p.links, "{name}");
                }
            }
        }
        assert!(matches!(
            Topology::parse("dgx-z"),
            Err(Error::UnknownTopology(_))
        ));
    }

    #[test]
    fn dgx1_v100_every_gpu_has_six_links_in_one_island() {
        let gpus = Topology::Dgx1V100.gpus(Path::new("/dev/sim"));
        for g in &gpus {
            assert_eq!(g.nvlink_peers.iter().map(|p| p.links).sum::<u32>(), 6);
        }
        let islands = nvlink_islands(&gpus);
        assert_eq!(
            islands
                .values()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            1
        );
    }

    #[test]
    fn pairs_form_four_islands_and_pcie_none() {
        let islands = nvlink_islands(&Topology::Pcie8xNvlinkPairs.gpus(Path::new("/d")));
        assert_eq!(
            islands
                .values()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            4
        );
        assert!(nvlink_islands(&Topology::Pcie4x.gpus(Path::new("/d"))).is_empty());
    }
}
