//! GPU allocation at device level: whole GPUs (`nvidia.com/gpu`) and shares of one GPU
//! (`coxswain.dev/gpu-milli`), with NVLink-island and NUMA alignment and GPU model
//! constraints. Reserve writes the exact device IDs into the cycle state
//! ([`DEVICES_KEY`]); the scheduler assumes and binds them.
//!
//! Island alignment is a preference enforced as a filter: in the first pass a
//! multi-GPU pod only fits nodes where one island holds it; only when no node passes
//! does the framework relax and allow spreading over islands.

mod plan;
#[cfg(test)]
mod tests;

pub use plan::{GpuPlan, plan};

use super::super::cycle_state::{CycleState, RELAX_ISLAND};
use super::super::framework::{
    FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult, ReservePlugin, ScorePlugin,
};
use super::super::model::{DeviceAlloc, NodeInfo, PodInfo};
use super::super::snapshot::{ClusterSnapshot, EventMask};
use super::super::status::Status;

/// Cycle-state key of the `Vec<DeviceAlloc>` chosen at Reserve.
pub const DEVICES_KEY: &str = "GpuAllocation/devices";

/// The pod annotation constraining GPU models: `H100|A100` (substrings of the product name).
pub const GPU_MODEL_ANNOTATION: &str = "coxswain.dev/gpu-model";

/// Device-level GPU allocation.
#[derive(Debug, Default)]
pub struct GpuAllocation;

const NAME: &str = "GpuAllocation";

impl Plugin for GpuAllocation {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cured_by(&self) -> EventMask {
        EventMask::CAPACITY
    }
}

impl PreFilterPlugin for GpuAllocation {
    fn pre_filter(
        &self,
        _: &ClusterSnapshot,
        state: &mut CycleState,
        pod: &PodInfo,
    ) -> Result<PreFilterResult, Status> {
        if pod.gpus > 0 && pod.gpu_milli > 0 {
            return Err(Status::unresolvable(
                NAME,
                "pod asks for both nvidia.com/gpu and coxswain.dev/gpu-milli; ask for one",
            ));
        }
        if pod.gpu_milli > 1000 {
            return Err(Status::unresolvable(
                NAME,
                "coxswain.dev/gpu-milli must be at most 1000; use nvidia.com/gpu for whole GPUs",
            ));
        }
        if pod.gpus > 1 {
            state.allow_relaxing(RELAX_ISLAND);
        }
        Ok(PreFilterResult::default())
    }
}

impl FilterPlugin for GpuAllocation {
    fn filter(
        &self,
        _: &ClusterSnapshot,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        if pod.gpus == 0 && pod.gpu_milli == 0 {
            return Status::success();
        }
        let need = usize::from(pod.gpus.max(1));
        // Facts for the pod's models: the node summary when any model will do.
        let (healthy, idle, largest_idle_island, max_free) = if pod.gpu_models.is_empty() {
            let s = node.summary;
            (
                usize::from(s.healthy),
                usize::from(s.idle),
                usize::from(s.largest_idle_island),
                s.max_free,
            )
        } else {
            let matching = || {
                node.gpus
                    .iter()
                    .filter(|d| d.model_matches(&pod.gpu_models))
            };
            (
                matching().filter(|d| d.healthy).count(),
                node.idle_gpus(&pod.gpu_models),
                node.largest_idle_island(&pod.gpu_models),
                matching().map(|d| d.free_milli()).max().unwrap_or(0),
            )
        };
        if healthy < need {
            let reason = if pod.gpu_models.is_empty() {
                "node(s) had too few GPUs for the pod"
            } else {
                "node(s) had too few GPUs of the requested model"
            };
            return Status::unresolvable(NAME, reason);
        }
        if pod.is_gpu_share() {
            return if max_free >= pod.gpu_milli {
                Status::success()
            } else {
                Status::unschedulable(
                    NAME,
                    "node(s) had no GPU with enough free coxswain.dev/gpu-milli",
                )
            };
        }
        if idle < need {
            return Status::unschedulable(NAME, "Insufficient nvidia.com/gpu");
        }
        // Until relaxed, only nodes with an island that holds the whole pod pass, so an
        // aligned placement anywhere in the cluster beats a spread one.
        if need > 1 && !state.is_relaxed(RELAX_ISLAND) && largest_idle_island < need {
            return Status::unschedulable(
                NAME,
                "node(s) had no NVLink island with enough idle GPUs",
            );
        }
        Status::success()
    }
}

impl ScorePlugin for GpuAllocation {
    fn score(&self, _: &ClusterSnapshot, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        if pod.gpus < 2 {
            return 0;
        }
        if pod.gpu_models.is_empty() {
            // From the summary: no per-node device walk on the hot path.
            let (k, s) = (pod.gpus.min(255) as u8, node.summary);
            return match (s.largest_idle_island >= k, s.largest_idle_numa >= k) {
                (true, true) => 100,
                (true, false) => 60,
                _ => 0,
            };
        }
        match plan(pod, node) {
            Some(p) if p.aligned && p.same_numa => 100,
            Some(p) if p.aligned => 60,
            _ => 0,
        }
    }
}

impl ReservePlugin for GpuAllocation {
    fn reserve(
        &self,
        _: &ClusterSnapshot,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        let Some(p) = plan(pod, node) else {
            return Status::unschedulable(NAME, "GPUs taken since Filter");
        };
        let devices: Vec<DeviceAlloc> = p
            .devices
            .iter()
            .map(|&i| DeviceAlloc {
                id: node.gpus[i].id.clone(),
                milli: p.milli,
            })
            .collect();
        state.write(DEVICES_KEY, devices);
        Status::success()
    }

    fn unreserve(&self, _: &ClusterSnapshot, _: &PodInfo, _: &str) {
        // Device usage lives in the assumed pod; forgetting it releases the devices.
    }
}
