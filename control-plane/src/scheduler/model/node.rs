//! A node as the scheduler sees it: allocatable and requested resources, labels,
//! taints, cordon state, GPUs and the pods assigned (or assumed) to it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{DeviceAlloc, GpuDevice, PodKey, Resources};

/// What a taint does to pods that do not tolerate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaintEffect {
    /// New pods are not scheduled on the node.
    NoSchedule,
    /// The scheduler avoids the node but may use it (scoring only; not a filter).
    PreferNoSchedule,
    /// New pods are not scheduled and running ones are evicted.
    NoExecute,
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value (may be empty).
    pub value: String,
    /// Effect on non-tolerating pods.
    pub effect: TaintEffect,
}

/// A cluster-wide change counter: every node change takes a fresh value, so a
/// `(node, version)` pair never repeats even when nodes are removed and re-added.
static VERSION: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    VERSION.fetch_add(1, Ordering::Relaxed)
}

/// GPU facts of a node for pods without a model constraint, kept current on every
/// change so that the GPU filter is O(1) per node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuSummary {
    /// Healthy devices.
    pub healthy: u8,
    /// Idle (whole-GPU-allocatable) devices.
    pub idle: u8,
    /// Most healthy devices in one NVLink island.
    pub largest_island: u8,
    /// Most idle devices in one NVLink island.
    pub largest_idle_island: u8,
    /// Most idle devices on one NUMA node.
    pub largest_idle_numa: u8,
    /// Most free thousandths on one device.
    pub max_free: u16,
}

/// One node of the snapshot.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Node labels (including `topology.coxswain.dev/*`).
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    pub taints: Vec<Taint>,
    /// Cordoned (`spec.unschedulable`).
    pub unschedulable: bool,
    /// Allocatable cpu, memory, pods and extended resources.
    pub allocatable: Resources,
    /// Sum of requests of pods assigned or assumed here.
    pub requested: Resources,
    /// The node's GPUs, in device-plugin order.
    pub gpus: Vec<GpuDevice>,
    /// Pods assigned or assumed here.
    pub pods: Vec<PodKey>,
    /// Changes on every change (unique cluster-wide); lets plugins cache per-node results.
    pub version: u64,
    /// GPU facts, refreshed by [`NodeInfo::refresh`] (called by every mutator here).
    pub summary: GpuSummary,
    /// Interned topology domains `[block, rack, switch]` (0: no label). Set by the snapshot.
    pub domains: [u32; 3],
}

impl NodeInfo {
    /// A node with `allocatable` resources and `gpus`, no labels, taints or pods.
    pub fn new(name: impl Into<String>, allocatable: Resources, gpus: Vec<GpuDevice>) -> Self {
        let mut n = NodeInfo {
            name: name.into(),
            allocatable,
            gpus,
            ..NodeInfo::default()
        };
        n.refresh();
        n
    }

    /// Recomputes [`NodeInfo::summary`] and takes a new version; call after changing
    /// `gpus` directly.
    pub fn refresh(&mut self) {
        let mut s = GpuSummary::default();
        for (i, d) in self.gpus.iter().enumerate() {
            s.healthy += u8::from(d.healthy);
            s.idle += u8::from(d.is_idle());
            s.max_free = s.max_free.max(d.free_milli());
            if !self.gpus[..i].iter().any(|e| e.numa == d.numa) {
                let numa = self.gpus.iter().filter(|e| e.numa == d.numa && e.is_idle());
                s.largest_idle_numa = s.largest_idle_numa.max(numa.count() as u8);
            }
            if self.gpus[..i].iter().any(|e| e.island == d.island) {
                continue;
            }
            let island = self.gpus.iter().filter(|e| e.island == d.island);
            let healthy = island.clone().filter(|e| e.healthy).count() as u8;
            let idle = island.filter(|e| e.is_idle()).count() as u8;
            s.largest_island = s.largest_island.max(healthy);
            s.largest_idle_island = s.largest_idle_island.max(idle);
        }
        self.summary = s;
        self.version = next_version();
    }

    /// Accounts a pod's requests and device shares to this node.
    pub fn add_pod(&mut self, key: &PodKey, requests: &Resources, devices: &[DeviceAlloc]) {
        self.requested.add(requests);
        self.requested.pods += 1;
        for alloc in devices {
            if let Some(d) = self.gpus.iter_mut().find(|d| d.id == alloc.id) {
                d.used_milli = d.used_milli.saturating_add(alloc.milli);
            }
        }
        self.pods.push(key.clone());
        self.refresh();
    }

    /// Releases a pod's requests and device shares; a no-op for a pod not on this node.
    pub fn remove_pod(&mut self, key: &PodKey, requests: &Resources, devices: &[DeviceAlloc]) {
        let Some(pos) = self.pods.iter().position(|p| p == key) else {
            return;
        };
        self.pods.swap_remove(pos);
        self.requested.sub(requests);
        self.requested.pods -= 1;
        for alloc in devices {
            if let Some(d) = self.gpus.iter_mut().find(|d| d.id == alloc.id) {
                d.used_milli = d.used_milli.saturating_sub(alloc.milli);
            }
        }
        self.refresh();
    }

    /// Idle (whole-GPU-allocatable) devices whose model is one of `models`.
    pub fn idle_gpus(&self, models: &[String]) -> usize {
        self.gpus
            .iter()
            .filter(|d| d.is_idle() && d.model_matches(models))
            .count()
    }

    /// Total free GPU thousandths on healthy devices.
    pub fn free_gpu_milli(&self) -> u32 {
        self.gpus.iter().map(|d| u32::from(d.free_milli())).sum()
    }

    /// The largest number of idle `models` devices in one NVLink island.
    pub fn largest_idle_island(&self, models: &[String]) -> usize {
        let mut best = 0;
        for (i, d) in self.gpus.iter().enumerate() {
            if self.gpus[..i].iter().any(|e| e.island == d.island) {
                continue;
            }
            let n = self
                .gpus
                .iter()
                .filter(|e| e.island == d.island && e.is_idle() && e.model_matches(models))
                .count();
            best = best.max(n);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_remove_pod_accounts_devices() {
        let gpus = (0..4)
            .map(|i| GpuDevice::new(format!("GPU-{i}"), "H100", 0, (i / 2) as u16))
            .collect();
        let mut n = NodeInfo::new("n0", Resources::new(8000, 1 << 34, 110), gpus);
        let key: PodKey = "default/p".into();
        let alloc = vec![DeviceAlloc {
            id: "GPU-1".into(),
            milli: 1000,
        }];
        n.add_pod(&key, &Resources::new(1000, 0, 0), &alloc);
        assert_eq!(n.idle_gpus(&[]), 3);
        assert_eq!(n.largest_idle_island(&[]), 2);
        assert_eq!(n.requested.pods, 1);
        n.remove_pod(&key, &Resources::new(1000, 0, 0), &alloc);
        n.remove_pod(&key, &Resources::new(1000, 0, 0), &alloc);
        assert_eq!(n.idle_gpus(&[]), 4);
        assert_eq!(n.requested, Resources::default());
    }
}
