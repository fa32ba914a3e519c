//! A `Queue` (`coxswain.dev/v1alpha1`) as the scheduler sees it: quotas per resource in
//! the scheduler's units, its cohort and priority.

use std::collections::BTreeMap;

use coxswain_api::resources::{CPU, GPU_MILLI, MEMORY, NVIDIA_GPU, PODS};

use super::PodInfo;

/// The pod label naming the queue of a pod that is not a gang member (a gang member is
/// in its PodGroup's `spec.queue`).
pub const QUEUE_LABEL: &str = "scheduling.coxswain.dev/queue";

/// The quota of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Guaranteed amount.
    pub nominal: i64,
    /// How much more may be borrowed from the cohort; `None`: as much as is idle.
    pub borrowing_limit: Option<i64>,
}

/// The scheduling-relevant part of a `Queue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// Pods of higher-priority queues are tried first.
    pub priority: i32,
    /// Share of idle resources relative to sibling queues (stored; not yet used).
    pub weight: i32,
    /// Queues of one cohort lend each other their idle nominal quota.
    pub cohort: Option<String>,
    /// Per resource name (`cpu` in milli, `memory` in bytes, `nvidia.com/gpu` in GPUs,
    /// `coxswain.dev/gpu-milli` in thousandths of a GPU, others in units).
    pub quotas: BTreeMap<String, Quota>,
}

/// How much of `resource` (a quota's resource name) `pod` asks for.
pub fn demand(pod: &PodInfo, resource: &str) -> i64 {
    match resource {
        NVIDIA_GPU => i64::from(pod.gpus),
        GPU_MILLI => i64::from(pod.gpu_milli_total()),
        CPU => pod.requests.cpu_milli,
        MEMORY => pod.requests.memory,
        PODS => 1,
        other => pod.requests.extended(other),
    }
}
