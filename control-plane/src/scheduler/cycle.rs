//! One scheduling cycle: PreFilter → Filter (a sample of nodes, relaxed once if
//! nothing fits) → PostFilter on failure → Score → Reserve (assume) → Permit → Bind.

use std::time::{Duration, Instant};

use super::binder::Binding;
use super::cycle_state::CycleState;
use super::engine::{CycleReport, CycleResult, Scheduler};
use super::framework::Diagnosis;
use super::model::{DeviceAlloc, NodeInfo, PodInfo, PodKey};
use super::plugins::gpu::DEVICES_KEY;
use super::snapshot::EventMask;
use super::status::Status;

impl Scheduler {
    /// How many feasible nodes to find before scoring, for `nodes` nodes.
    fn feasible_to_find(&self, nodes: usize) -> usize {
        let min = self.config.min_feasible_nodes;
        if nodes <= min {
            return nodes;
        }
        let pct = self
            .config
            .percentage_of_nodes_to_score
            .unwrap_or_else(|| (50usize.saturating_sub(nodes / 125)).max(5) as u32);
        (nodes * pct as usize / 100).max(min)
    }

    /// Filters candidates; `Err` carries why every node was rejected.
    fn find_feasible(
        &mut self,
        pod: &PodInfo,
        state: &mut CycleState,
        report: &mut CycleReport,
    ) -> Result<Vec<usize>, Diagnosis> {
        loop {
            let started = Instant::now();
            let pre_filtered = self.framework.run_pre_filter(&self.snapshot, state, pod);
            report.time("PreFilter", started.elapsed());
            let filtering = Instant::now();
            let candidates = match pre_filtered {
                Ok(c) => c,
                Err(s) => {
                    return Err(Diagnosis {
                        rejected: Vec::new(),
                        pre_filter: Some(s),
                    });
                }
            };
            let nodes = self.snapshot.nodes();
            let total = candidates.as_ref().map_or(nodes.len(), Vec::len);
            let want = if candidates.is_some() {
                total
            } else {
                self.feasible_to_find(total)
            };
            let start = if candidates.is_some() || total == 0 {
                0
            } else {
                self.next_start % total
            };
            let mut feasible = Vec::new();
            let mut rejected = Vec::new();
            if let Some(i) = self
                .nominated
                .get(&pod.key)
                .and_then(|n| self.snapshot.node_index(n))
                && self
                    .framework
                    .run_filter(&self.snapshot, state, pod, &nodes[i])
                    .is_success()
            {
                report.time("Filter", filtering.elapsed());
                return Ok(vec![i]);
            }
            let mut scanned = 0;
            for k in 0..total {
                let pos = (start + k) % total;
                let i = candidates.as_ref().map_or(pos, |c| c[pos]);
                scanned += 1;
                let s = self
                    .framework
                    .run_filter(&self.snapshot, state, pod, &nodes[i]);
                if s.is_success() {
                    feasible.push(i);
                    if feasible.len() >= want {
                        break;
                    }
                } else {
                    rejected.push((i, s));
                }
            }
            if candidates.is_none() && total > 0 {
                self.next_start = (start + scanned) % total;
            }
            report.time("Filter", filtering.elapsed());
            if !feasible.is_empty() {
                return Ok(feasible);
            }
            if state.can_relax() {
                state.relax();
                continue;
            }
            return Err(Diagnosis {
                rejected,
                pre_filter: None,
            });
        }
    }

    /// Pops one pod and runs a full cycle for it; `None` when the active queue is empty.
    pub fn schedule_one(&mut self) -> Option<CycleReport> {
        let now = self.clock.now();
        let (key, _) = self.queue.pop()?;
        let mut report = CycleReport {
            pod: key.clone(),
            result: CycleResult::Skipped,
            bound: Vec::new(),
            released: Vec::new(),
            failure: None,
            timings: Vec::new(),
        };
        let Some(pod) = self
            .snapshot
            .pod(&key)
            .filter(|p| p.node.is_none())
            .cloned()
        else {
            self.queue.delete(&key);
            return Some(report);
        };
        let mut state = CycleState::new();
        report.result = match self.find_feasible(&pod, &mut state, &mut report) {
            Ok(feasible) => {
                let started = Instant::now();
                let best = self.select(&pod, &state, &feasible);
                report.time("Score", started.elapsed());
                self.reserve_and_permit(&pod, &mut state, best, now, &mut report)
            }
            Err(diagnosis) => {
                let started = Instant::now();
                let result = self.fail(&pod, &state, &diagnosis, now, &mut report);
                report.time("PostFilter", started.elapsed());
                result
            }
        };
        self.release_rejected(now, &mut report.released);
        Some(report)
    }

    fn select(&self, pod: &PodInfo, state: &CycleState, feasible: &[usize]) -> usize {
        if feasible.len() == 1 {
            return feasible[0];
        }
        let scores = self
            .framework
            .run_score(&self.snapshot, state, pod, feasible);
        let mut best = 0;
        for (i, s) in scores.iter().enumerate() {
            if *s > scores[best] {
                best = i;
            }
        }
        feasible[best]
    }

    fn reserve_and_permit(
        &mut self,
        pod: &PodInfo,
        state: &mut CycleState,
        node_index: usize,
        now: Duration,
        report: &mut CycleReport,
    ) -> CycleResult {
        let node: &NodeInfo = &self.snapshot.nodes()[node_index];
        let name = node.name.clone();
        let started = Instant::now();
        let s = self.framework.run_reserve(&self.snapshot, state, pod, node);
        report.time("Reserve", started.elapsed());
        if !s.is_success() {
            self.queue
                .add_unschedulable(&pod.key, self.cure(s.plugin), now);
            return CycleResult::Unschedulable(s);
        }
        let devices = state
            .read::<Vec<DeviceAlloc>>(DEVICES_KEY)
            .cloned()
            .unwrap_or_default();
        if let Err(e) = self.snapshot.assume(&pod.key, &name, devices) {
            self.framework.run_unreserve(&self.snapshot, pod, &name);
            self.queue.add_backoff(&pod.key, now);
            return CycleResult::Unschedulable(Status::error("Scheduler", e.to_string()));
        }
        self.nominated.remove(&pod.key);
        let started = Instant::now();
        let permit = self
            .framework
            .run_permit(&self.snapshot, pod, &name, &mut self.waiting);
        report.time("Permit", started.elapsed());
        match permit {
            Err(s) => {
                self.release(&pod.key, &name, &s, now);
                report.released.push(pod.key.clone());
                CycleResult::Unschedulable(s)
            }
            Ok(Some((pending, timeout))) => {
                let deadline = now.saturating_add(timeout);
                self.waiting.add(
                    pod.key.clone(),
                    name.clone(),
                    pod.group.clone(),
                    deadline,
                    pending,
                );
                self.bind_allowed(now, report);
                CycleResult::Waiting(name)
            }
            Ok(None) => {
                self.bind_allowed(now, report);
                let started = Instant::now();
                let bound = self.bind(&pod.key, &name, now);
                report.time("Bind", started.elapsed());
                match bound {
                    Ok(b) => {
                        report.bound.push(b);
                        CycleResult::Bound(name)
                    }
                    Err(s) => CycleResult::Unschedulable(s),
                }
            }
        }
    }

    fn bind_allowed(&mut self, now: Duration, report: &mut CycleReport) {
        for w in self.waiting.take_allowed() {
            let started = Instant::now();
            let bound = self.bind(&w.pod, &w.node, now);
            report.time("Bind", started.elapsed());
            if let Ok(b) = bound {
                report.bound.push(b);
            }
        }
    }

    /// Writes the binding of an assumed pod; a failure releases it into back-off.
    fn bind(&mut self, key: &PodKey, node: &str, now: Duration) -> Result<Binding, Status> {
        let devices = self
            .snapshot
            .pod(key)
            .map(|p| p.devices.clone())
            .unwrap_or_default();
        let binding = Binding {
            pod: key.clone(),
            node: node.to_string(),
            devices,
        };
        match self.binder.bind(&binding) {
            Ok(()) => {
                self.snapshot.finish_binding(key);
                self.queue.delete(key);
                Ok(binding)
            }
            Err(e) => {
                let s = Status::error("Bind", e.to_string());
                if let Some(pod) = self.snapshot.pod(key).cloned() {
                    self.framework.run_unreserve(&self.snapshot, &pod, node);
                }
                self.snapshot.forget(key);
                // A conflict (the pod changed under us) and a store error both retry
                // after back-off; the next attempt sees the pod's new state.
                self.queue.add_backoff(key, now);
                Err(s)
            }
        }
    }

    /// Unreserves and forgets an assumed pod and parks it.
    fn release(&mut self, key: &PodKey, node: &str, status: &Status, now: Duration) {
        if let Some(pod) = self.snapshot.pod(key).cloned() {
            self.framework.run_unreserve(&self.snapshot, &pod, node);
        }
        self.snapshot.forget(key);
        self.queue
            .add_unschedulable(key, self.cure(status.plugin), now);
    }

    /// Releases every pod rejected at Permit since the last call.
    pub(super) fn release_rejected(&mut self, now: Duration, released: &mut Vec<PodKey>) {
        let rejected = self.waiting.take_rejected();
        if rejected.is_empty() {
            return;
        }
        for (w, _) in &rejected {
            if let Some(pod) = self.snapshot.pod(&w.pod).cloned() {
                self.framework.run_unreserve(&self.snapshot, &pod, &w.node);
            }
            self.snapshot.forget(&w.pod);
        }
        // Their capacity is free again: pods parked for the lack of it may fit now.
        self.queue.on_release(EventMask::POD_DELETED, now);
        for (w, s) in rejected {
            self.queue
                .add_unschedulable(&w.pod, self.cure(s.plugin), now);
            released.push(w.pod);
        }
    }
}
