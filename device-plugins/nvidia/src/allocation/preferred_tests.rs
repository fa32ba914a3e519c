//! Preferred allocation on every simulated topology.

use std::path::Path;

use super::preferred_allocation;
use crate::gpu::GpuInfo;
use crate::topology::Topology;

fn pick(t: Topology, available: &[u32], must: &[u32], size: usize) -> Vec<u32> {
    let gpus: Vec<GpuInfo> = t.gpus(Path::new("/sim"));
    let ids =
        |idx: &[u32]| -> Vec<String> { idx.iter().map(|i| gpus[*i as usize].id.clone()).collect() };
    let chosen = preferred_allocation(&gpus, &ids(available), &ids(must), size);
    let mut out: Vec<u32> = chosen
        .iter()
        .map(|id| gpus.iter().find(|g| &g.id == id).unwrap().index)
        .collect();
    out.sort();
    out
}

const ALL8: &[u32] = &[0, 1, 2, 3, 4, 5, 6, 7];

#[test]
fn dgx_h100_keeps_sets_numa_local() {
    assert_eq!(pick(Topology::DgxH100, ALL8, &[], 4), [0, 1, 2, 3]);
    assert_eq!(pick(Topology::DgxH100, ALL8, &[5], 4), [4, 5, 6, 7]);
    assert_eq!(pick(Topology::DgxH100, &[1, 4, 5], &[], 2), [4, 5]);
    assert_eq!(pick(Topology::DgxH100, ALL8, &[], 8), ALL8);
}

#[test]
fn dgx_a100_prefers_gpus_sharing_a_numa_node() {
    assert_eq!(pick(Topology::DgxA100, ALL8, &[], 2), [0, 1]);
    assert_eq!(pick(Topology::DgxA100, ALL8, &[2], 2), [2, 3]);
    assert_eq!(pick(Topology::DgxA100, &[0, 2, 4, 5], &[], 2), [4, 5]);
}

#[test]
fn nvlink_pairs_stay_together() {
    let t = Topology::Pcie8xNvlinkPairs;
    assert_eq!(pick(t, &[0, 2, 3, 5], &[], 2), [2, 3]);
    assert_eq!(pick(t, ALL8, &[], 4), [0, 1, 2, 3]);
    assert_eq!(pick(t, ALL8, &[5], 2), [4, 5]);
    assert_eq!(pick(t, &[0, 1, 4, 5, 6, 7], &[], 4), [4, 5, 6, 7]);
    // A broken pair is worse than a whole one even across NUMA nodes.
    assert_eq!(pick(t, &[0, 2, 6, 7], &[], 2), [6, 7]);
}

#[test]
fn dgx1_v100_uses_the_cube_mesh() {
    let t = Topology::Dgx1V100;
    // A fully connected quad on one NUMA node.
    assert_eq!(pick(t, ALL8, &[], 4), [0, 1, 2, 3]);
    // GPU 0's double links go to 3 (NUMA 0) and 4 (NUMA 1).
    assert_eq!(pick(t, ALL8, &[0], 2), [0, 3]);
    assert_eq!(pick(t, &[0, 4, 5, 6], &[0], 2), [0, 4]);
    // 5-6 and 6-7 are double links.
    assert_eq!(pick(t, &[1, 5, 6, 7], &[], 3), [5, 6, 7]);
}

#[test]
fn pcie_without_nvlink_falls_back_to_numa() {
    assert_eq!(pick(Topology::Pcie4x, &[0, 1, 2, 3], &[], 2), [0, 1]);
    assert_eq!(pick(Topology::Pcie4x, &[1, 2, 3], &[], 2), [2, 3]);
    assert_eq!(pick(Topology::Pcie4x, &[1, 2, 3], &[1], 2), [1, 2]);
}

#[test]
fn unknown_ids_are_never_chosen_and_short_pools_return_everything() {
    let gpus = Topology::Pcie4x.gpus(Path::new("/sim"));
    let available = vec!["GPU-unknown".to_string(), gpus[3].id.clone()];
    assert_eq!(
        preferred_allocation(&gpus, &available, &[], 2),
        vec![gpus[3].id.clone()]
    );
}
