//! A pod as the scheduler sees it: requests, GPU asks, placement constraints, gang.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use coxswain_api::coxswain::TopologyConstraint;

use super::{DeviceAlloc, Resources};

/// `namespace/name` of a pod (or of a pod group).
pub type PodKey = Arc<str>;

/// Operator of a node-affinity requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequirementOp {
    /// The label's value is one of the values.
    In,
    /// The label is absent or its value is none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl RequirementOp {
    /// The operator Kubernetes spells `op` (`In`, `NotIn`, `Exists`, `DoesNotExist`);
    /// `None` for the ones the scheduler does not support (`Gt`, `Lt`) and unknown ones.
    pub fn parse(op: &str) -> Option<Self> {
        match op {
            "In" => Some(Self::In),
            "NotIn" => Some(Self::NotIn),
            "Exists" => Some(Self::Exists),
            "DoesNotExist" => Some(Self::DoesNotExist),
            _ => None,
        }
    }
}

/// One node-selector requirement (`matchExpressions` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// Operator.
    pub op: RequirementOp,
    /// Values for `In` / `NotIn`.
    pub values: Vec<String>,
}

/// Operator of a toleration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TolerationOp {
    /// Matches a taint with the same key and value.
    Equal,
    /// Matches any taint with the key (or any taint at all with an empty key).
    Exists,
}

/// A pod toleration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    /// Taint key to tolerate (empty with `Exists`: every taint).
    pub key: String,
    /// Operator.
    pub op: TolerationOp,
    /// Value for `Equal`.
    pub value: String,
    /// Effect tolerated; `None` tolerates every effect.
    pub effect: Option<super::TaintEffect>,
}

/// The scheduling-relevant part of a `PodGroup`.
#[derive(Debug, Clone, PartialEq)]
pub struct GangSpec {
    /// `namespace/name` of the group.
    pub key: PodKey,
    /// Members that must be placed together.
    pub min_member: u32,
    /// How long reserved members wait at Permit for the rest.
    pub timeout: Duration,
    /// Network-topology packing; `None` packs as tightly as possible (preferred).
    pub topology: Option<TopologyConstraint>,
    /// Creation order, for queue sorting (earlier gangs first).
    pub seq: u64,
    /// The queue the gang is admitted through (`spec.queue`, default `default`).
    pub queue: Option<String>,
}

/// A pod to schedule (or one already assigned).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    /// `namespace/name`.
    pub key: PodKey,
    /// Priority (from its `PriorityClass`); higher first, may preempt lower.
    pub priority: i32,
    /// Creation order, for queue sorting.
    pub seq: u64,
    /// `spec.preemptionPolicy: Never`: the pod waits instead of preempting.
    pub never_preempts: bool,
    /// Requests of cpu, memory and extended resources (sum over containers).
    pub requests: Resources,
    /// Whole GPUs (`nvidia.com/gpu`).
    pub gpus: u16,
    /// A share of one GPU in thousandths (`coxswain.dev/gpu-milli`), 0 when none.
    pub gpu_milli: u16,
    /// Acceptable GPU models (substrings, from `coxswain.dev/gpu-model: H100|A100`); empty: any.
    pub gpu_models: Vec<String>,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity: OR of terms, each an AND of requirements.
    pub affinity: Vec<Vec<Requirement>>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// `namespace/name` of the pod group, when the pod is a gang member.
    pub group: Option<PodKey>,
    /// The queue of a pod outside a gang (label `scheduling.coxswain.dev/queue`).
    pub queue: Option<String>,
    /// Node the pod is bound to, for pods already placed.
    pub node: Option<String>,
    /// Devices the pod holds, for pods already placed.
    pub devices: Vec<DeviceAlloc>,
    /// Names of the PersistentVolumeClaims its volumes use (in the pod's namespace).
    pub claims: Vec<String>,
}

impl PodInfo {
    /// A pod with `cpu_milli`, `memory` and `gpus` whole GPUs; everything else default.
    pub fn new(key: &str, cpu_milli: i64, memory: i64, gpus: u16) -> Self {
        PodInfo {
            key: key.into(),
            requests: Resources::new(cpu_milli, memory, 0),
            gpus,
            ..PodInfo::default()
        }
    }

    /// Whether the pod asks for a share of one GPU rather than whole GPUs.
    pub fn is_gpu_share(&self) -> bool {
        self.gpus == 0 && self.gpu_milli > 0
    }

    /// GPU thousandths the pod asks for in total.
    pub fn gpu_milli_total(&self) -> u32 {
        u32::from(self.gpus) * 1000 + u32::from(self.gpu_milli)
    }
}
