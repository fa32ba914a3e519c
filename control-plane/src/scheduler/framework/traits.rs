//! One trait per extension point, after kube-scheduler's `framework/interface.go`.
//!
//! Every method takes the snapshot read-only; plugins keep what they learn during a
//! cycle in the [`CycleState`]. Long-lived plugin state (gangs, the workload
//! distribution) sits behind the plugin's own lock.

use std::time::Duration;

use super::super::cycle_state::CycleState;
use super::super::model::{NodeInfo, PodInfo, PodKey};
use super::super::queue::QueueKey;
use super::super::snapshot::{ClusterSnapshot, EventMask};
use super::super::status::Status;
use super::waiting::WaitingPods;

/// What every plugin has: a name and the cluster events that may cure its rejections.
pub trait Plugin: Send + Sync {
    /// The plugin's name, as used in statuses.
    fn name(&self) -> &'static str;

    /// Event kinds after which a pod this plugin rejected is worth retrying.
    fn cured_by(&self) -> EventMask {
        EventMask::CAPACITY
    }
}

/// Orders the active queue. Unlike kube's `Less(a, b)` it yields a sort key, so the
/// queue stays an ordered map with O(log n) insert and pop.
pub trait QueueSortPlugin: Plugin {
    /// The pod's position in the active queue.
    fn sort_key(&self, snapshot: &ClusterSnapshot, pod: &PodInfo) -> QueueKey;
}

/// What PreFilter may say beyond success: a narrower set of candidate nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreFilterResult {
    /// Only these node indices are candidates (`None`: all nodes).
    pub nodes: Option<Vec<usize>>,
}

/// Runs once per cycle before Filter: pod-level checks and precomputation.
pub trait PreFilterPlugin: Plugin {
    /// Checks the pod and fills `state`.
    fn pre_filter(
        &self,
        snapshot: &ClusterSnapshot,
        state: &mut CycleState,
        pod: &PodInfo,
    ) -> Result<PreFilterResult, Status>;
}

/// Decides whether the pod can run on one node.
pub trait FilterPlugin: Plugin {
    /// `Success` when the pod fits `node`.
    fn filter(
        &self,
        snapshot: &ClusterSnapshot,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status;
}

/// Why Filter rejected each node, for PostFilter.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    /// Rejected node indices and the first rejecting status.
    pub rejected: Vec<(usize, Status)>,
    /// The PreFilter rejection, if the cycle stopped there.
    pub pre_filter: Option<Status>,
}

/// What a successful PostFilter achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostFilterResult {
    /// The node the pod will go to once the victims are gone.
    pub nominated: Option<String>,
    /// Pods to evict.
    pub victims: Vec<PodKey>,
}

/// Runs the profile's Filter plugins for the pod against a (what-if) node.
pub type NodeFilter<'a> = dyn Fn(&NodeInfo) -> Status + 'a;

/// Runs when no node fits: preemption, or releasing a gang's reserved members.
pub trait PostFilterPlugin: Plugin {
    /// Tries to make the pod schedulable later; `Err` when this plugin cannot help.
    /// `filter` checks the pod against a modified copy of a node.
    fn post_filter(
        &self,
        snapshot: &ClusterSnapshot,
        pod: &PodInfo,
        diagnosis: &Diagnosis,
        waiting: &mut WaitingPods,
        filter: &NodeFilter<'_>,
    ) -> Result<PostFilterResult, Status>;
}

/// Ranks feasible nodes; the framework multiplies by the plugin's weight and sums.
pub trait ScorePlugin: Plugin {
    /// Raw score of `node` for the pod.
    fn score(
        &self,
        snapshot: &ClusterSnapshot,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> i64;

    /// Maps raw scores into 0..=100 (default: already in range).
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [i64]) {}
}

/// Claims resources on the chosen node before binding; Unreserve must be idempotent.
pub trait ReservePlugin: Plugin {
    /// Reserves for the pod on `node` (e.g. picks exact GPU IDs into `state`).
    fn reserve(
        &self,
        snapshot: &ClusterSnapshot,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status;

    /// Undoes `reserve`; called for failed cycles, rejected waiters and failed binds.
    fn unreserve(&self, snapshot: &ClusterSnapshot, pod: &PodInfo, node: &str);
}

/// A Permit plugin's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermitDecision {
    /// Bind now.
    Allow,
    /// Hold the pod (reserved) until allowed through [`WaitingPods`], at most this long.
    Wait(Duration),
    /// Give up the reservation.
    Reject(Status),
}

/// Gates binding: gang members wait here until the whole gang is reserved.
pub trait PermitPlugin: Plugin {
    /// Allows, holds or rejects the reserved pod; may allow or reject other waiters.
    fn permit(
        &self,
        snapshot: &ClusterSnapshot,
        pod: &PodInfo,
        node: &str,
        waiting: &mut WaitingPods,
    ) -> PermitDecision;
}
