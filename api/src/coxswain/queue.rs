//! `Queue`: a cluster-scoped share of the cluster's GPUs, CPUs and memory.
//!
//! Queues form a tree through `parent`. Each has a `nominal` quota per resource that is
//! guaranteed to it and may borrow idle quota from its cohort up to `borrowingLimit`.
//! Borrowed resources of a `reclaimable` queue can be taken back by preemption.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use serde::{Deserialize, Serialize};

use super::{coxswain_resource, is_zero};

/// A share of the cluster that jobs and gangs are admitted through.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    /// `coxswain.dev/v1alpha1`.
    pub api_version: String,
    /// `Queue`.
    pub kind: String,
    /// Standard object metadata (no namespace: queues are cluster-scoped).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The queue's quotas and place in the hierarchy.
    #[serde(default)]
    pub spec: QueueSpec,
    /// What the queue holds now, written by the scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<QueueStatus>,
}

coxswain_resource!(Queue, QueueSpec, "queues", ClusterResourceScope);

/// The desired state of a queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueSpec {
    /// Quota per resource name (`nvidia.com/gpu`, `coxswain.dev/gpu-milli`, `cpu`,
    /// `memory`, ...). A resource not listed is not limited by this queue.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quotas: BTreeMap<String, QueueQuota>,
    /// Share of idle resources relative to sibling queues (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Higher-priority queues are served first and may reclaim from lower ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// The parent queue in the hierarchy; none for a root queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Queues in one cohort lend each other their idle quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    /// Whether resources this queue borrowed may be reclaimed by preemption (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaimable: Option<bool>,
}

/// The quota of one resource in a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueQuota {
    /// Amount guaranteed to the queue.
    pub nominal: Quantity,
    /// How much more the queue may borrow from its cohort; unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub borrowing_limit: Option<Quantity>,
}

/// The observed state of a queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// Resources held by the queue's admitted workloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocated: BTreeMap<String, Quantity>,
    /// Workloads waiting for admission.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending: i32,
    /// Workloads admitted and running.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub running: i32,
    /// Details such as `Active`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
