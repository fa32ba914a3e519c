//! `PodGroup`: a gang of pods scheduled all or nothing.
//!
//! The scheduler holds every pod of a group until `minMember` of them can be placed
//! together (and `minResources` fit), then binds them at once. Pods join a group through
//! the label [`PodGroup::POD_LABEL`].

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use serde::{Deserialize, Serialize};

use super::{TopologyConstraint, coxswain_resource, is_zero};

/// A gang of pods that must be scheduled together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodGroup {
    /// `coxswain.dev/v1alpha1`.
    pub api_version: String,
    /// `PodGroup`.
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the gang needs.
    pub spec: PodGroupSpec,
    /// Where the gang stands, written by the scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PodGroupStatus>,
}

coxswain_resource!(PodGroup, PodGroupSpec, "podgroups", NamespaceResourceScope);

impl PodGroup {
    /// The pod label naming the pod group a pod belongs to.
    pub const POD_LABEL: &'static str = "scheduling.coxswain.dev/pod-group";
}

/// The desired state of a pod group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodGroupSpec {
    /// Pods that must be placed together before any is bound (at least 1).
    pub min_member: i32,
    /// Resources the whole gang needs (e.g. `nvidia.com/gpu: "16"`); the gang waits in
    /// its queue until they fit the queue's quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_resources: Option<BTreeMap<String, Quantity>>,
    /// The queue the gang is admitted through (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The `PriorityClass` that orders this gang against others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Seconds the gang may wait for placement before it is marked `Unschedulable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_timeout_seconds: Option<i64>,
    /// Pack the gang into one network-topology domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<TopologyConstraint>,
}

/// The lifecycle phase of a pod group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodGroupPhase {
    /// Waiting for admission by its queue.
    Pending,
    /// Admitted by its queue; waiting for placement.
    Inqueue,
    /// At least `minMember` pods are bound and running.
    Running,
    /// The gang cannot be placed (see the conditions for why).
    Unschedulable,
    /// Every pod finished and at least `minMember` succeeded.
    Completed,
    /// The gang failed.
    Failed,
}

/// The observed state of a pod group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodGroupStatus {
    /// The current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PodGroupPhase>,
    /// Pods bound to nodes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub scheduled: i32,
    /// Pods running.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub running: i32,
    /// Pods that succeeded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub succeeded: i32,
    /// Pods that failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: i32,
    /// Details such as `Unschedulable` with the scheduler's reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
