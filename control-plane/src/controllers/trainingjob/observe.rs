//! What the controller sees of a job's pods: a small summary of each pod the job owns.

use coxswain_api::coxswain::TrainingJob;
use k8s_openapi::api::core::v1::Pod;

/// The lifecycle phase of a pod, as its agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    /// Not bound yet, or its containers are starting.
    Pending,
    /// Its containers run.
    Running,
    /// Every container exited 0.
    Succeeded,
    /// A container failed.
    Failed,
}

impl PodPhase {
    /// Whether the pod has finished (nothing runs any more).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// One pod of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedPod {
    /// The pod's name.
    pub name: String,
    /// The pod's uid (deletions are preconditioned on it).
    pub uid: String,
    /// Its phase.
    pub phase: PodPhase,
    /// Whether it has a `deletionTimestamp`.
    pub terminating: bool,
    /// Whether it is bound to a node.
    pub bound: bool,
    /// The exit code of its first terminated container, if any.
    pub exit_code: Option<i32>,
    /// The status reason (`Evicted`, ...) or the terminated container's reason.
    pub reason: Option<String>,
}

impl ObservedPod {
    /// The summary of `pod`.
    pub fn from_pod(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        let phase = match status.and_then(|s| s.phase.as_deref()) {
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            _ => PodPhase::Pending,
        };
        let terminated = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
            .find(|t| t.exit_code != 0);
        Self {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            phase,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            bound: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty()),
            exit_code: terminated.map(|t| t.exit_code),
            reason: status
                .and_then(|s| s.reason.clone())
                .or_else(|| terminated.and_then(|t| t.reason.clone())),
        }
    }

    /// Whether the pod is controlled by `job` (same uid, so a pod left by an earlier job of
    /// the same name is not mistaken for this one's).
    pub fn is_owned_by(pod: &Pod, job: &TrainingJob) -> bool {
        let Some(uid) = job.metadata.uid.as_deref() else {
            return false;
        };
        pod.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid && o.controller == Some(true))
    }

    /// A few words on how the pod ended, for messages.
    pub fn describe_failure(&self) -> String {
        let mut text = format!("pod {} failed", self.name);
        if let Some(code) = self.exit_code {
            text.push_str(&format!(" with exit code {code}"));
        }
        if let Some(reason) = &self.reason {
            text.push_str(&format!(" ({reason})"));
        }
        text
    }
}
