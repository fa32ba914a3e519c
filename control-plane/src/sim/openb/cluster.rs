//! Per-node resource accounting of the replay: free CPU, memory and
//! per-device free milli-GPU, the feasibility filter and binding
//! (PROTOCOL.md §3.1, §3.2, §3.5).

use super::trace::{MAX_GPUS, NodeSpec, PodSpec};

/// Capacity of one GPU in milli.
pub const GPU_MILLI: i64 = 1000;
/// The node's pod limit (never binding on openb).
const MAX_PODS: u32 = 1001;

/// GPU-request classes, also GpuClustering's affinity tags.
pub mod tag {
    /// One GPU, less than 1000 milli.
    pub const SHARE: u8 = 1;
    /// Whole-GPU pods of `k` GPUs (`k` is 1, 2, 4 or 8 on openb; other
    /// counts share the tag of their largest power-of-two factor).
    pub fn whole(k: u32) -> u8 {
        2 << k.min(8).trailing_zeros()
    }
}

/// The live state of one node.
#[derive(Clone, Debug)]
pub struct NodeState {
    /// Index of the node's model in [`Cluster::models`].
    pub model: u8,
    /// Free CPU, milli-cores.
    pub cpu_free: i64,
    /// Free memory, MiB.
    pub mem_free: i64,
    /// Number of GPUs.
    pub gpus: usize,
    /// Free milli per device; entries past `gpus` are 0.
    pub gpu_free: [u16; MAX_GPUS],
    /// Pods bound to the node.
    pub pods: u32,
    /// Bitset of [`tag`]s of the GPU pods bound to the node.
    pub tags: u8,
    /// Bumped on every bind; score caches compare it.
    pub version: u32,
}

impl NodeState {
    /// Free milli per device.
    pub fn devices(&self) -> &[u16] {
        &self.gpu_free[..self.gpus]
    }

    /// Σ free milli over the devices.
    pub fn gpu_free_total(&self) -> i64 {
        self.devices().iter().map(|&d| i64::from(d)).sum()
    }

    /// Number of fully free devices.
    pub fn fully_free(&self) -> usize {
        self.devices()
            .iter()
            .filter(|&&d| i64::from(d) == GPU_MILLI)
            .count()
    }

    /// The `k` lowest-index fully free devices (whole-GPU pods).
    pub fn lowest_free_devices(&self, k: usize) -> Vec<usize> {
        (0..self.gpus)
            .filter(|&i| i64::from(self.gpu_free[i]) == GPU_MILLI)
            .take(k)
            .collect()
    }

    /// The tightest device with at least `milli` free, lowest index on ties.
    pub fn tightest_device(&self, milli: i64) -> Option<usize> {
        (0..self.gpus)
            .filter(|&i| i64::from(self.gpu_free[i]) >= milli)
            .min_by_key(|&i| (self.gpu_free[i], i))
    }
}

/// The cluster: static node facts plus live state.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Node facts, in node-name order.
    pub specs: Vec<NodeSpec>,
    /// Live state, parallel to `specs`.
    pub nodes: Vec<NodeState>,
    /// Distinct model names; [`NodeState::model`] indexes this.
    pub models: Vec<String>,
    /// GPU milli held by bound pods.
    pub used_gpu_milli: i64,
}

impl Cluster {
    /// An empty cluster of `specs` (at most [`MAX_GPUS`] GPUs each).
    pub fn new(specs: Vec<NodeSpec>) -> Self {
        let mut models: Vec<String> = Vec::new();
        let nodes = specs
            .iter()
            .map(|s| {
                let model = match models.iter().position(|m| *m == s.model) {
                    Some(i) => i,
                    None => {
                        models.push(s.model.clone());
                        models.len() - 1
                    }
                };
                let mut gpu_free = [0u16; MAX_GPUS];
                gpu_free[..s.gpus].fill(GPU_MILLI as u16);
                NodeState {
                    model: model as u8,
                    cpu_free: s.cpu_milli,
                    mem_free: s.memory_mib,
                    gpus: s.gpus,
                    gpu_free,
                    pods: 0,
                    tags: 0,
                    version: 1,
                }
            })
            .collect();
        Cluster {
            specs,
            nodes,
            models,
            used_gpu_milli: 0,
        }
    }

    /// For each model index, whether `pod` may run on it.
    pub fn model_mask(&self, pod: &PodSpec) -> Vec<bool> {
        self.models
            .iter()
            .map(|m| pod.num_gpu == 0 || pod.accepts_model(m))
            .collect()
    }

    /// The filter of §3.2; `models` is [`Self::model_mask`] of `pod`.
    pub fn fits(&self, node: usize, pod: &PodSpec, models: &[bool]) -> bool {
        let n = &self.nodes[node];
        if pod.cpu_milli > n.cpu_free || pod.memory_mib > n.mem_free || n.pods >= MAX_PODS {
            return false;
        }
        if pod.num_gpu == 0 || pod.gpu_milli <= 0 {
            return true;
        }
        if n.gpus == 0 || !models[n.model as usize] {
            return false;
        }
        let fitting = n
            .devices()
            .iter()
            .filter(|&&d| i64::from(d) >= pod.gpu_milli)
            .count();
        fitting >= pod.num_gpu as usize
    }

    /// Binds `pod` to `node` on `devices` (empty for CPU-only pods).
    pub fn bind(&mut self, node: usize, pod: &PodSpec, devices: &[usize]) {
        let n = &mut self.nodes[node];
        n.cpu_free -= pod.cpu_milli;
        n.mem_free -= pod.memory_mib;
        n.pods += 1;
        n.version += 1;
        if pod.num_gpu > 0 && pod.gpu_milli > 0 {
            for &d in devices {
                n.gpu_free[d] -= pod.gpu_milli as u16;
                self.used_gpu_milli += pod.gpu_milli;
            }
            n.tags |= pod_tag(pod);
        }
    }
}

/// GpuClustering's affinity tag of a GPU pod.
pub fn pod_tag(pod: &PodSpec) -> u8 {
    if pod.num_gpu == 1 && pod.gpu_milli < GPU_MILLI {
        tag::SHARE
    } else {
        tag::whole(pod.num_gpu)
    }
}

/// Whether `pod` is a GPU-sharing pod (one GPU, less than 1000 milli).
pub fn is_sharing(pod: &PodSpec) -> bool {
    pod.num_gpu == 1 && pod.gpu_milli > 0 && pod.gpu_milli < GPU_MILLI
}
