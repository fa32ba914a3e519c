//! The failure path of a cycle: no node fits. Runs PostFilter (preemption, then the
//! gang's release of its waiting members), evicts victims, and parks the pod — and the
//! untried members of its gang — until an event that may help.

use std::collections::BTreeMap;
use std::time::Duration;

use super::cycle_state::CycleState;
use super::engine::{CycleReport, CycleResult, Scheduler};
use super::framework::Diagnosis;
use super::model::{NodeInfo, PodInfo, PodKey};
use super::snapshot::EventMask;
use super::status::{Code, Status};

impl Scheduler {
    pub(super) fn fail(
        &mut self,
        pod: &PodInfo,
        state: &CycleState,
        diagnosis: &Diagnosis,
        now: Duration,
        report: &mut CycleReport,
    ) -> CycleResult {
        report.failure = Some(summarize(self.snapshot.nodes().len(), diagnosis));
        let mut cure = EventMask::default();
        let mut first: Option<Status> = diagnosis.pre_filter.clone();
        let mut seen: Vec<&'static str> = Vec::new();
        for s in diagnosis
            .pre_filter
            .iter()
            .chain(diagnosis.rejected.iter().map(|(_, s)| s))
        {
            if !seen.contains(&s.plugin) {
                seen.push(s.plugin);
                cure = cure.union(self.cure(s.plugin));
            }
            if first.is_none() {
                first = Some(s.clone());
            }
        }
        if seen.is_empty() {
            // No plugin rejected it (no nodes yet: the pod watch ran ahead of the node
            // watch): any event may help, as kube-scheduler requeues a pod without
            // rejector plugins.
            cure = EventMask::ALL;
        }
        let status =
            first.unwrap_or_else(|| Status::unresolvable("Scheduler", "no nodes in the cluster"));
        let mut outcome = CycleResult::Unschedulable(status.clone());
        if status.code != Code::Error {
            // What-if nodes are filtered in the cycle's state: at the relaxation level the
            // cycle ended on (a fresh state would hold an 8-GPU pod to one NVLink island).
            let framework = &self.framework;
            let snapshot = &self.snapshot;
            let filter = |n: &NodeInfo| framework.run_filter(snapshot, state, pod, n);
            for p in &framework.post_filter {
                let Ok(result) =
                    p.post_filter(snapshot, pod, diagnosis, &mut self.waiting, &filter)
                else {
                    continue;
                };
                if let Some(node) = result.nominated {
                    for victim in &result.victims {
                        // An eviction that fails leaves the victim; the next attempt retries.
                        let _ = self
                            .binder
                            .evict(victim, "preempted by a higher-priority pod");
                    }
                    self.nominated.insert(pod.key.clone(), node.clone());
                    outcome = CycleResult::Preempting {
                        node,
                        victims: result.victims,
                    };
                    cure = cure.union(EventMask::POD_DELETED);
                }
                break;
            }
        }
        // Released before the pod and its gang are parked, so the capacity they free
        // wakes other pods, not this gang.
        self.release_rejected(now, &mut report.released);
        self.park_gang(pod, cure, now);
        self.queue.add_unschedulable(&pod.key, cure, now);
        outcome
    }

    /// A gang member failed: the members not yet tried wait with it.
    fn park_gang(&mut self, pod: &PodInfo, cure: EventMask, now: Duration) {
        let Some(group) = pod.group.as_deref().and_then(|g| self.snapshot.group(g)) else {
            return;
        };
        let satisfied = group
            .spec
            .as_ref()
            .is_some_and(|s| group.placed.len() >= s.min_member as usize);
        if satisfied {
            return;
        }
        let pending: Vec<PodKey> = group
            .members
            .iter()
            .filter(|m| !group.placed.contains(*m) && **m != pod.key)
            .cloned()
            .collect();
        for m in pending {
            self.queue.add_unschedulable(&m, cure, now);
        }
    }
}

/// Kubernetes' `FitError` message: per-node reasons counted and sorted, or the
/// PreFilter rejection that ruled out every node.
fn summarize(nodes: usize, diagnosis: &Diagnosis) -> String {
    if let Some(s) = &diagnosis.pre_filter {
        return format!("0/{nodes} nodes are available: {}.", s.reason);
    }
    if nodes == 0 {
        return "0/0 nodes are available: no nodes in the cluster.".to_string();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, s) in &diagnosis.rejected {
        *counts.entry(s.reason.as_ref()).or_default() += 1;
    }
    let mut reasons: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    reasons.sort();
    format!("0/{nodes} nodes are available: {}.", reasons.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_sorts_reasons() {
        let gpu = Status::unschedulable("GpuAllocation", "Insufficient nvidia.com/gpu");
        let cordon = Status::unresolvable("NodeUnschedulable", "node(s) were unschedulable");
        let diagnosis = Diagnosis {
            rejected: vec![(0, gpu.clone()), (1, cordon), (2, gpu)],
            pre_filter: None,
        };
        assert_eq!(
            summarize(3, &diagnosis),
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient nvidia.com/gpu."
        );
        let gang = Diagnosis {
            rejected: Vec::new(),
            pre_filter: Some(Status::unresolvable(
                "Gang",
                "pod group ns/g has 2 of 3 pods",
            )),
        };
        assert_eq!(
            summarize(2, &gang),
            "0/2 nodes are available: pod group ns/g has 2 of 3 pods."
        );
    }
}
