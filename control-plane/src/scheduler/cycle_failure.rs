//! The failure path of a cycle: no node fits. Runs PostFilter (preemption, then the
//! gang's release of its waiting members), evicts victims, and parks the pod — and the
//! untried members of its gang — until an event that may help.

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
        diagnosis: &Diagnosis,
        now: Duration,
        report: &mut CycleReport,
    ) -> CycleResult {
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
        let status =
            first.unwrap_or_else(|| Status::unresolvable("Scheduler", "no nodes in the cluster"));
        let mut outcome = CycleResult::Unschedulable(status.clone());
        if status.code != Code::Error {
            let state = CycleState::new();
            let framework = &self.framework;
            let snapshot = &self.snapshot;
            let filter = |n: &NodeInfo| framework.run_filter(snapshot, &state, pod, n);
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
        self.park_gang(pod, cure, now);
        self.queue.add_unschedulable(&pod.key, cure, now);
        self.release_rejected(now, &mut report.released);
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
