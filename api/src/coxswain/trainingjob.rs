//! `TrainingJob`: a distributed-training job made of replica groups run as one gang.
//!
//! Each replica group (`master`, `worker`, ...) creates `replicas` pods named
//! `<job>-<group>-<index>` from its template. The whole job is scheduled all-or-nothing
//! through a [`crate::coxswain::PodGroup`] whose `minMember` is the sum of replicas.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use serde::{Deserialize, Serialize};

use super::{TopologyConstraint, coxswain_resource, is_zero};

/// A distributed-training job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJob {
    /// `coxswain.dev/v1alpha1`.
    pub api_version: String,
    /// `TrainingJob`.
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What to run.
    pub spec: TrainingJobSpec,
    /// What is running, written by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TrainingJobStatus>,
}

coxswain_resource!(
    TrainingJob,
    TrainingJobSpec,
    "trainingjobs",
    NamespaceResourceScope
);

/// The desired state of a training job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobSpec {
    /// The groups of identical pods (`master`, `worker`, `ps`, ...); at least one.
    #[serde(default)]
    pub replica_groups: Vec<ReplicaGroup>,
    /// Pack the whole job into one network-topology domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<TopologyConstraint>,
    /// The [`crate::coxswain::Queue`] the job is admitted through (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The `PriorityClass` of the job's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Limits on the job's lifetime and retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_policy: Option<RunPolicy>,
    /// When the job counts as succeeded (default: every pod succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_policy: Option<SuccessPolicy>,
    /// Name of a volume in every group's template where checkpoints are written; kept
    /// across restarts so training resumes from the last checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_volume: Option<String>,
    /// Where the checkpoint volume is mounted in every container that does not mount it
    /// already (default [`TrainingJob::DEFAULT_CHECKPOINT_PATH`]); `CHECKPOINT_DIR` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_path: Option<String>,
    /// Pods of the gang that must be placed together before any is bound (default: all
    /// replicas of all groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_member: Option<i32>,
    /// The port of the rendezvous on the master's pod 0, as `MASTER_PORT` (default
    /// [`TrainingJob::DEFAULT_MASTER_PORT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_port: Option<i32>,
}

/// A group of identical pods within a training job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaGroup {
    /// The group's name, a DNS-1123 label; part of its pods' names.
    pub name: String,
    /// How many pods the group runs (at least 1).
    pub replicas: i32,
    /// Whole GPUs each pod gets; added as an `nvidia.com/gpu` limit on the first
    /// container when the template asks for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_per_replica: Option<i32>,
    /// The pod each replica runs.
    #[serde(default)]
    pub template: PodTemplateSpec,
    /// What happens when one of the group's pods fails (default `OnFailure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<ReplicaRestartPolicy>,
}

/// What the controller does when a replica's pod fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaRestartPolicy {
    /// Restart the whole gang after any failure, up to `backoffLimit` times.
    OnFailure,
    /// Restart even after success (for long-running servers such as parameter servers).
    Always,
    /// Never restart: a failure fails the job.
    Never,
    /// Restart on retryable exit codes (128 and above, i.e. signals); fail on others.
    ExitCode,
}

/// Limits on a training job's lifetime and retries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPolicy {
    /// Gang restarts allowed before the job fails (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<i32>,
    /// Seconds the job may run after it starts before it is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// Seconds after finishing before the job is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i32>,
    /// When true, no pods run; setting it on a running job stops its pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Seconds the gang may wait to be scheduled before the job fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_timeout_seconds: Option<i64>,
}

/// When a training job counts as succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuccessPolicy {
    /// Which pods must succeed.
    #[serde(rename = "type")]
    pub type_: SuccessPolicyType,
    /// The group whose pods must succeed, for [`SuccessPolicyType::Group`] (e.g. `master`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Which pods must succeed for a training job to succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SuccessPolicyType {
    /// Every pod of every group.
    AllWorkers,
    /// Every pod of the named group (a master, a launcher); the others are then stopped.
    Group,
}

/// The observed state of a training job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobStatus {
    /// `Created`, `Scheduled`, `Running`, `Restarting`, `Succeeded`, `Failed`, `Suspended`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Pod counters per replica group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_groups: Vec<ReplicaGroupStatus>,
    /// Gang restarts so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: i32,
    /// When the job's pods were first scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Why the job is in its state: the reason of its latest condition (`BackoffLimitExceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, in words a person can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Pod counters of one replica group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaGroupStatus {
    /// The group's name.
    pub name: String,
    /// Pods pending or running.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub active: i32,
    /// Pods that succeeded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub succeeded: i32,
    /// Pods that failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: i32,
}

/// The condition types a training job reports, in `status.conditions[].type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingJobConditionType {
    /// The job was accepted and its pod group created.
    Created,
    /// The whole gang was placed.
    Scheduled,
    /// Every pod is running.
    Running,
    /// The gang is being restarted after a failure.
    Restarting,
    /// The job finished successfully.
    Succeeded,
    /// The job failed for good.
    Failed,
    /// The job is suspended.
    Suspended,
}

impl TrainingJobConditionType {
    /// The string written in `status.conditions[].type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Scheduled => "Scheduled",
            Self::Running => "Running",
            Self::Restarting => "Restarting",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Suspended => "Suspended",
        }
    }
}

impl TrainingJob {
    /// The label naming the training job a pod, service or config map belongs to.
    pub const JOB_NAME_LABEL: &'static str = "coxswain.dev/job-name";
    /// The label naming a pod's replica group.
    pub const REPLICA_GROUP_LABEL: &'static str = "coxswain.dev/replica-group";
    /// The label holding a pod's index within its replica group.
    pub const REPLICA_INDEX_LABEL: &'static str = "coxswain.dev/replica-index";
    /// The rendezvous port when `spec.masterPort` is unset (torch.distributed's default).
    pub const DEFAULT_MASTER_PORT: i32 = 29500;
    /// Where the checkpoint volume is mounted when `spec.checkpointPath` is unset.
    pub const DEFAULT_CHECKPOINT_PATH: &'static str = "/checkpoints";
    /// The group whose pod 0 is the rendezvous master: the group named `master`, else the
    /// first group.
    pub fn master_group(&self) -> Option<&ReplicaGroup> {
        let groups = &self.spec.replica_groups;
        groups
            .iter()
            .find(|g| g.name == "master")
            .or_else(|| groups.first())
    }

    /// The groups in rank order: the master group first, then the others as listed.
    pub fn groups_in_rank_order(&self) -> Vec<&ReplicaGroup> {
        let master = self.master_group().map(|g| g.name.as_str());
        let groups = &self.spec.replica_groups;
        let first = groups.iter().filter(|g| Some(g.name.as_str()) == master);
        let rest = groups.iter().filter(|g| Some(g.name.as_str()) != master);
        first.chain(rest).collect()
    }

    /// Total pods across all replica groups (negative counts count as zero).
    pub fn total_replicas(&self) -> i64 {
        self.spec
            .replica_groups
            .iter()
            .map(|g| i64::from(g.replicas.max(0)))
            .sum()
    }

    /// The name of pod `index` of group `group`: `<job>-<group>-<index>`.
    pub fn pod_name(&self, group: &str, index: i32) -> String {
        let job = self.metadata.name.as_deref().unwrap_or_default();
        format!("{job}-{group}-{index}")
    }
}
