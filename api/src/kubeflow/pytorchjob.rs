//! `PyTorchJob` (`kubeflow.org/v1`): Kubeflow's distributed PyTorch job, field for field.
//!
//! A job has up to two replica types, `Master` (at most one pod, rank 0) and `Worker`;
//! each pod runs a container named `pytorch`. Every field of Kubeflow's schema is kept,
//! including those coxswain does not act on (`elasticPolicy`, `cleanPodPolicy`), so a
//! manifest round-trips and strict field validation accepts it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use serde::{Deserialize, Serialize};

use super::API_VERSION;

/// The replica type of the rank-0 pod.
pub const MASTER: &str = "Master";
/// The replica type of the other pods.
pub const WORKER: &str = "Worker";
/// The replica types a `PyTorchJob` may have, in rank order.
pub const REPLICA_TYPES: [&str; 2] = [MASTER, WORKER];
/// The container every replica's template must have; it gets the rendezvous environment.
pub const DEFAULT_CONTAINER_NAME: &str = "pytorch";
/// The name of the rendezvous port on the `pytorch` container.
pub const DEFAULT_PORT_NAME: &str = "pytorchjob-port";
/// The rendezvous port when the `pytorch` container names none.
pub const DEFAULT_PORT: i32 = 23456;
/// `spec.nprocPerNode` when unset.
pub const DEFAULT_NPROC_PER_NODE: &str = "auto";

/// A distributed PyTorch job, as the Kubeflow training operator defines it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PyTorchJob {
    /// `kubeflow.org/v1`.
    pub api_version: String,
    /// `PyTorchJob`.
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What to run.
    #[serde(default)]
    pub spec: PyTorchJobSpec,
    /// What is running, written by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PyTorchJobStatus>,
}

impl k8s_openapi::Resource for PyTorchJob {
    const API_VERSION: &'static str = API_VERSION;
    const GROUP: &'static str = super::GROUP;
    const KIND: &'static str = "PyTorchJob";
    const VERSION: &'static str = super::VERSION;
    const URL_PATH_SEGMENT: &'static str = "pytorchjobs";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::ListableResource for PyTorchJob {
    const LIST_KIND: &'static str = "PyTorchJobList";
}

impl k8s_openapi::Metadata for PyTorchJob {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl PyTorchJob {
    /// A new job with this kind's `apiVersion` and `kind`, the given name and spec.
    pub fn new(name: &str, spec: PyTorchJobSpec) -> Self {
        PyTorchJob {
            api_version: API_VERSION.to_string(),
            kind: "PyTorchJob".to_string(),
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            spec,
            status: None,
        }
    }

    /// Pods across all replica types (unset replicas count as Kubeflow's default, 1).
    pub fn total_replicas(&self) -> i64 {
        self.spec
            .pytorch_replica_specs
            .values()
            .map(|s| i64::from(s.replicas.unwrap_or(1).max(0)))
            .sum()
    }
}

/// The desired state of a `PyTorchJob`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PyTorchJobSpec {
    /// Lifetime, retry, clean-up and scheduling policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_policy: Option<RunPolicy>,
    /// torchrun elastic settings; kept, but coxswain runs the job at its fixed size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elastic_policy: Option<ElasticPolicy>,
    /// The replica types (`Master`, `Worker`) and how each runs.
    #[serde(default)]
    pub pytorch_replica_specs: BTreeMap<String, ReplicaSpec>,
    /// Processes per pod for torchrun: `auto`, `cpu`, `gpu` or a number (default `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nproc_per_node: Option<String>,
}

/// The pods of one replica type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSpec {
    /// How many pods (default 1; `Master` must have exactly 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The pod each replica runs; it needs a container named `pytorch`.
    #[serde(default)]
    pub template: PodTemplateSpec,
    /// What happens when a pod fails (default `OnFailure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
}

/// Kubeflow's replica restart policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Restart even after success.
    Always,
    /// Restart after a failure.
    OnFailure,
    /// Never restart.
    Never,
    /// Restart on exit codes 128-255 (signals), fail on 1-127.
    ExitCode,
}

/// What happens to a finished job's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CleanPodPolicy {
    /// Delete every pod.
    All,
    /// Delete the pods still running.
    Running,
    /// Keep every pod (the default).
    None,
}

/// Lifetime, retry, clean-up and scheduling policies of a Kubeflow job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPolicy {
    /// What happens to the pods when the job finishes (default `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_pod_policy: Option<CleanPodPolicy>,
    /// Seconds after finishing before the job is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i32>,
    /// Seconds the job may be active before it is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// Retries before the job is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<i32>,
    /// Gang-scheduling settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_policy: Option<SchedulingPolicy>,
    /// When true, no pods run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// The controller that manages the job (Kubeflow's or an external one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

/// Gang-scheduling settings of a Kubeflow job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingPolicy {
    /// Pods that must be placed together (coxswain: all of them, or unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<i32>,
    /// The queue the job is admitted through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Resources the gang needs before it is admitted (coxswain computes its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_resources: Option<BTreeMap<String, Quantity>>,
    /// The `PriorityClass` of the job's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class: Option<String>,
    /// Seconds the gang may wait to be scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_timeout_seconds: Option<i32>,
}

/// torchrun's elastic settings (kept as written; coxswain does not resize jobs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ElasticPolicy {
    /// The fewest workers the job may shrink to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    /// The most workers the job may grow to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    /// The rendezvous backend: `c10d`, `etcd` or `etcd-v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdzv_backend: Option<String>,
    /// The rendezvous port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdzv_port: Option<i32>,
    /// The rendezvous host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdzv_host: Option<String>,
    /// The rendezvous id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdzv_id: Option<String>,
    /// Extra rendezvous settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rdzv_conf: Vec<RdzvConf>,
    /// Run a standalone C10d rendezvous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standalone: Option<bool>,
    /// Deprecated: processes per pod; use `spec.nprocPerNode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_proc_per_node: Option<i32>,
    /// Restarts torchrun allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<i32>,
    /// Autoscaling metrics (`autoscaling/v2` `MetricSpec`s), kept as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<serde_json::Value>,
}

/// One extra rendezvous setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RdzvConf {
    /// The setting's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The observed state of a Kubeflow job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PyTorchJobStatus {
    /// `Created`, `Running`, `Restarting`, `Succeeded`, `Failed`, `Suspended`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<JobCondition>,
    /// Pod counters per replica type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replica_statuses: BTreeMap<String, ReplicaStatus>,
    /// When the job was acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// When the job was last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile_time: Option<Time>,
}

/// One condition of a Kubeflow job (its own shape, with `lastUpdateTime`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCondition {
    /// The condition's type (`Running`, ...).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason for the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the condition was last updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// When the condition's status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// Pod counters of one replica type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Pods running.
    #[serde(default, skip_serializing_if = "crate::coxswain::is_zero")]
    pub active: i32,
    /// Pods that succeeded.
    #[serde(default, skip_serializing_if = "crate::coxswain::is_zero")]
    pub succeeded: i32,
    /// Pods that failed.
    #[serde(default, skip_serializing_if = "crate::coxswain::is_zero")]
    pub failed: i32,
    /// Deprecated: the replicas' label selector; use `selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// The replicas' label selector, serialized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}
