//! The plugin framework: the plugin lists of one profile and the code that runs each
//! extension point over them.

mod traits;
mod waiting;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use traits::{
    Diagnosis, FilterPlugin, NodeFilter, PermitDecision, PermitPlugin, Plugin, PostFilterPlugin,
    PostFilterResult, PreFilterPlugin, PreFilterResult, QueueSortPlugin, ReservePlugin,
    ScorePlugin,
};
pub use waiting::{WaitingPod, WaitingPods};

use super::cycle_state::CycleState;
use super::model::{NodeInfo, PodInfo};
use super::snapshot::{ClusterSnapshot, EventMask};
use super::status::Status;

/// The plugins of one scheduling profile, per extension point, in call order.
pub struct Framework {
    /// Orders the active queue.
    pub queue_sort: Arc<dyn QueueSortPlugin>,
    /// PreFilter plugins.
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    /// Filter plugins (cheapest first: the first rejection stops the node).
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    /// PostFilter plugins, tried in order until one succeeds.
    pub post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    /// Score plugins with their weights.
    pub score: Vec<(Arc<dyn ScorePlugin>, i64)>,
    /// Reserve plugins (unreserved in reverse order).
    pub reserve: Vec<Arc<dyn ReservePlugin>>,
    /// Permit plugins.
    pub permit: Vec<Arc<dyn PermitPlugin>>,
    cures: HashMap<&'static str, EventMask>,
}

impl Framework {
    /// A profile with only a queue sort; add plugins with the `with_*` methods.
    pub fn new(queue_sort: Arc<dyn QueueSortPlugin>) -> Self {
        Framework {
            queue_sort,
            pre_filter: Vec::new(),
            filter: Vec::new(),
            post_filter: Vec::new(),
            score: Vec::new(),
            reserve: Vec::new(),
            permit: Vec::new(),
            cures: HashMap::new(),
        }
    }

    fn note(&mut self, p: &dyn Plugin) {
        self.cures.insert(p.name(), p.cured_by());
    }

    /// Adds a PreFilter plugin.
    pub fn with_pre_filter(mut self, p: Arc<dyn PreFilterPlugin>) -> Self {
        self.note(p.as_ref());
        self.pre_filter.push(p);
        self
    }

    /// Adds a Filter plugin.
    pub fn with_filter(mut self, p: Arc<dyn FilterPlugin>) -> Self {
        self.note(p.as_ref());
        self.filter.push(p);
        self
    }

    /// Adds a PostFilter plugin.
    pub fn with_post_filter(mut self, p: Arc<dyn PostFilterPlugin>) -> Self {
        self.note(p.as_ref());
        self.post_filter.push(p);
        self
    }

    /// Adds a Score plugin with `weight`.
    pub fn with_score(mut self, p: Arc<dyn ScorePlugin>, weight: i64) -> Self {
        self.note(p.as_ref());
        self.score.push((p, weight));
        self
    }

    /// Adds a Reserve plugin.
    pub fn with_reserve(mut self, p: Arc<dyn ReservePlugin>) -> Self {
        self.note(p.as_ref());
        self.reserve.push(p);
        self
    }

    /// Adds a Permit plugin.
    pub fn with_permit(mut self, p: Arc<dyn PermitPlugin>) -> Self {
        self.note(p.as_ref());
        self.permit.push(p);
        self
    }

    /// The events that may cure a rejection by `plugin` (all events for unknown names).
    pub fn cured_by(&self, plugin: &str) -> EventMask {
        self.cures.get(plugin).copied().unwrap_or(EventMask::ALL)
    }

    /// Runs PreFilter; intersects the candidate node sets the plugins return.
    pub fn run_pre_filter(
        &self,
        snapshot: &ClusterSnapshot,
        state: &mut CycleState,
        pod: &PodInfo,
    ) -> Result<Option<Vec<usize>>, Status> {
        let mut nodes: Option<Vec<usize>> = None;
        for p in &self.pre_filter {
            let result = p.pre_filter(snapshot, state, pod)?;
            if let Some(set) = result.nodes {
                nodes = Some(match nodes {
                    None => set,
                    Some(cur) => cur.into_iter().filter(|n| set.contains(n)).collect(),
                });
            }
        }
        Ok(nodes)
    }

    /// Runs Filter on one node; the first rejection wins.
    pub fn run_filter(
        &self,
        snapshot: &ClusterSnapshot,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        for p in &self.filter {
            let s = p.filter(snapshot, state, pod, node);
            if !s.is_success() {
                return s;
            }
        }
        Status::success()
    }

    /// Weighted, normalized total score of each node in `nodes`.
    pub fn run_score(
        &self,
        snapshot: &ClusterSnapshot,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[usize],
    ) -> Vec<i64> {
        let mut total = vec![0i64; nodes.len()];
        let mut raw = vec![0i64; nodes.len()];
        for (p, weight) in &self.score {
            for (slot, &i) in raw.iter_mut().zip(nodes) {
                *slot = p.score(snapshot, state, pod, &snapshot.nodes()[i]);
            }
            p.normalize(state, pod, &mut raw);
            for (t, r) in total.iter_mut().zip(&raw) {
                *t += r * weight;
            }
        }
        total
    }

    /// Runs Reserve; on a failure, unreserves what was reserved and returns it.
    pub fn run_reserve(
        &self,
        snapshot: &ClusterSnapshot,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        for (i, p) in self.reserve.iter().enumerate() {
            let s = p.reserve(snapshot, state, pod, node);
            if !s.is_success() {
                for q in self.reserve[..=i].iter().rev() {
                    q.unreserve(snapshot, pod, &node.name);
                }
                return s;
            }
        }
        Status::success()
    }

    /// Runs Unreserve on every Reserve plugin, in reverse order. Idempotent.
    pub fn run_unreserve(&self, snapshot: &ClusterSnapshot, pod: &PodInfo, node: &str) {
        for p in self.reserve.iter().rev() {
            p.unreserve(snapshot, pod, node);
        }
    }

    /// Runs Permit: any rejection rejects; otherwise the pod waits for the plugins that
    /// asked it to (the shortest timeout wins), or is allowed.
    pub fn run_permit(
        &self,
        snapshot: &ClusterSnapshot,
        pod: &PodInfo,
        node: &str,
        waiting: &mut WaitingPods,
    ) -> Result<Option<(Vec<&'static str>, Duration)>, Status> {
        let mut pending = Vec::new();
        let mut timeout = Duration::MAX;
        for p in &self.permit {
            match p.permit(snapshot, pod, node, waiting) {
                PermitDecision::Allow => {}
                PermitDecision::Wait(t) => {
                    pending.push(p.name());
                    timeout = timeout.min(t);
                }
                PermitDecision::Reject(s) => return Err(s),
            }
        }
        Ok((!pending.is_empty()).then_some((pending, timeout)))
    }
}
