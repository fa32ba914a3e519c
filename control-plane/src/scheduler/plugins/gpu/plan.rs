//! Which exact GPUs of a node a pod gets.
//!
//! Whole GPUs: the NVLink island with the fewest idle GPUs that still holds the whole
//! request (best fit, so islands that larger requests need stay whole), and inside it
//! one NUMA node when one holds the request (again best fit); without a fitting island,
//! the fewest islands, largest first. A share (`gpu-milli`) goes to the already-shared
//! device with the least room that fits, else to an idle device in the island with the
//! fewest idle GPUs; a device never exceeds 1000 milli.

use super::super::super::model::{NodeInfo, PodInfo};

/// The devices a pod would get on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuPlan {
    /// Device indices on the node.
    pub devices: Vec<usize>,
    /// Thousandths taken from each (1000 for whole GPUs).
    pub milli: u16,
    /// All devices in one NVLink island.
    pub aligned: bool,
    /// All devices on one NUMA node.
    pub same_numa: bool,
}

/// Idle devices of `node` matching the pod's model constraint, grouped by island.
fn idle_by_island(pod: &PodInfo, node: &NodeInfo) -> Vec<(u16, Vec<usize>)> {
    let mut islands: Vec<(u16, Vec<usize>)> = Vec::new();
    for (i, d) in node.gpus.iter().enumerate() {
        if !d.is_idle() || !d.model_matches(&pod.gpu_models) {
            continue;
        }
        match islands.iter_mut().find(|(id, _)| *id == d.island) {
            Some((_, v)) => v.push(i),
            None => islands.push((d.island, vec![i])),
        }
    }
    islands
}

/// Picks `k` of `candidates`, preferring a single NUMA node (best fit), else the
/// NUMA nodes with most candidates first.
fn pick_numa(node: &NodeInfo, candidates: &[usize], k: usize) -> Vec<usize> {
    let mut numas: Vec<(u8, Vec<usize>)> = Vec::new();
    for &i in candidates {
        let n = node.gpus[i].numa;
        match numas.iter_mut().find(|(id, _)| *id == n) {
            Some((_, v)) => v.push(i),
            None => numas.push((n, vec![i])),
        }
    }
    if let Some((_, v)) = numas
        .iter()
        .filter(|(_, v)| v.len() >= k)
        .min_by_key(|(id, v)| (v.len(), *id))
    {
        return v[..k].to_vec();
    }
    numas.sort_by_key(|(id, v)| (std::cmp::Reverse(v.len()), *id));
    numas.into_iter().flat_map(|(_, v)| v).take(k).collect()
}

fn plan_whole(pod: &PodInfo, node: &NodeInfo, k: usize) -> Option<GpuPlan> {
    let mut islands = idle_by_island(pod, node);
    let total: usize = islands.iter().map(|(_, v)| v.len()).sum();
    if total < k {
        return None;
    }
    let best = islands
        .iter()
        .filter(|(_, v)| v.len() >= k)
        .min_by_key(|(id, v)| (v.len(), *id));
    let devices = match best {
        Some((_, v)) => pick_numa(node, v, k),
        None => {
            islands.sort_by_key(|(id, v)| (std::cmp::Reverse(v.len()), *id));
            let mut out = Vec::with_capacity(k);
            for (_, v) in &islands {
                let take = (k - out.len()).min(v.len());
                out.extend(pick_numa(node, v, take));
                if out.len() == k {
                    break;
                }
            }
            out
        }
    };
    Some(finish(node, devices, 1000))
}

fn finish(node: &NodeInfo, devices: Vec<usize>, milli: u16) -> GpuPlan {
    let first = devices.first().map(|&i| &node.gpus[i]);
    let aligned = devices
        .iter()
        .all(|&i| Some(node.gpus[i].island) == first.map(|d| d.island));
    let same_numa = devices
        .iter()
        .all(|&i| Some(node.gpus[i].numa) == first.map(|d| d.numa));
    GpuPlan {
        devices,
        milli,
        aligned,
        same_numa,
    }
}

fn plan_share(pod: &PodInfo, node: &NodeInfo) -> Option<GpuPlan> {
    let m = pod.gpu_milli;
    let idle_in_island = |island: u16| {
        node.gpus
            .iter()
            .filter(|d| d.island == island && d.is_idle())
            .count()
    };
    let best = node
        .gpus
        .iter()
        .enumerate()
        .filter(|(_, d)| d.free_milli() >= m && d.model_matches(&pod.gpu_models))
        .min_by_key(|(i, d)| (d.is_idle(), d.free_milli(), idle_in_island(d.island), *i))?;
    Some(finish(node, vec![best.0], m))
}

/// The devices `pod` would get on `node`, or `None` when its GPU ask does not fit.
/// Pods without a GPU ask get an empty plan.
pub fn plan(pod: &PodInfo, node: &NodeInfo) -> Option<GpuPlan> {
    if pod.gpus > 0 {
        plan_whole(pod, node, usize::from(pod.gpus))
    } else if pod.gpu_milli > 0 {
        plan_share(pod, node)
    } else {
        Some(GpuPlan {
            devices: Vec::new(),
            milli: 0,
            aligned: true,
            same_numa: true,
        })
    }
}
