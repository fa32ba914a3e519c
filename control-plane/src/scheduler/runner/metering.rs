//! Records the runner's work into [`crate::metrics::scheduler::SchedulerMetrics`]: per
//! cycle (attempts, latencies, preemptions), per pod (first seen pending → bound), per
//! gang (first member pending → `minMember` bound), and the pending-pod gauges, refreshed
//! at most once per [`GAUGE_INTERVAL`] from the scheduler's queue and snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::model::PodKey;
use super::super::{CycleReport, CycleResult, Scheduler};
use super::feed::Input;
use crate::metrics::Metrics;
use crate::metrics::scheduler::PROFILE;

/// The least time between two refreshes of the pending-pod gauges.
pub(super) const GAUGE_INTERVAL: Duration = Duration::from_millis(500);

/// What the scheduling thread needs to meter; a no-op without metrics.
pub(super) struct Meter {
    metrics: Option<Arc<Metrics>>,
    /// Pending pods: when first seen pending.
    pending_since: HashMap<PodKey, Instant>,
    /// Gangs with a pending member: when the first was seen.
    gang_since: HashMap<PodKey, Instant>,
    /// The plugin that last rejected each pending pod.
    rejected_by: HashMap<PodKey, &'static str>,
    /// `(queue, reason)` series written at the last refresh (zeroed when they empty).
    series: Vec<(String, String)>,
    refreshed: Option<Instant>,
}

impl Meter {
    pub(super) fn new(metrics: Option<Arc<Metrics>>) -> Meter {
        Meter {
            metrics,
            pending_since: HashMap::new(),
            gang_since: HashMap::new(),
            rejected_by: HashMap::new(),
            series: Vec::new(),
            refreshed: None,
        }
    }

    /// Notes a watch input before it is applied.
    pub(super) fn input(&mut self, input: &Input) {
        if self.metrics.is_none() {
            return;
        }
        match input {
            Input::PodApplied(pod) if pod.node.is_none() => {
                let now = Instant::now();
                self.pending_since.entry(pod.key.clone()).or_insert(now);
                if let Some(group) = &pod.group {
                    self.gang_since.entry(group.clone()).or_insert(now);
                }
            }
            Input::PodApplied(pod) => {
                self.pending_since.remove(&pod.key);
                self.rejected_by.remove(&pod.key);
            }
            Input::PodDeleted(key) => {
                self.pending_since.remove(key);
                self.rejected_by.remove(key);
            }
            Input::GroupDeleted(key) => {
                self.gang_since.remove(key);
            }
            _ => {}
        }
    }

    /// Records one cycle.
    pub(super) fn cycle(&mut self, scheduler: &Scheduler, report: &CycleReport, took: Duration) {
        let Some(metrics) = self.metrics.clone() else {
            return;
        };
        let m = &metrics.scheduler;
        let result = match &report.result {
            CycleResult::Bound(_) => "scheduled",
            CycleResult::Waiting(_) => "waiting",
            CycleResult::Unschedulable(s) if s.is_rejected() => "unschedulable",
            CycleResult::Unschedulable(_) => "error",
            CycleResult::Preempting { .. } => "unschedulable",
            CycleResult::Skipped => return,
        };
        m.attempts.with_label_values(&[result, PROFILE]).inc();
        m.attempt_duration
            .with_label_values(&[result, PROFILE])
            .observe(took.as_secs_f64());
        for (point, d) in &report.timings {
            m.extension_point_duration
                .with_label_values(&[point, PROFILE])
                .observe(d.as_secs_f64());
        }
        match &report.result {
            CycleResult::Unschedulable(s) if s.is_rejected() => {
                self.rejected_by.insert(report.pod.clone(), s.plugin);
            }
            CycleResult::Preempting { victims, .. } => {
                self.rejected_by.insert(report.pod.clone(), "Preemption");
                m.preemption_attempts.inc();
                m.preemption_victims.observe(victims.len() as f64);
            }
            _ => {}
        }
        let now = Instant::now();
        for binding in &report.bound {
            self.rejected_by.remove(&binding.pod);
            if let Some(since) = self.pending_since.remove(&binding.pod) {
                m.pod_scheduling_duration
                    .observe(now.duration_since(since).as_secs_f64());
            }
            let snapshot = scheduler.snapshot();
            let Some(group_key) = snapshot.pod(&binding.pod).and_then(|p| p.group.clone()) else {
                continue;
            };
            let complete = snapshot.group(&group_key).is_some_and(|g| {
                g.spec
                    .as_ref()
                    .is_some_and(|s| g.placed.len() >= s.min_member as usize)
            });
            if complete && let Some(since) = self.gang_since.remove(&group_key) {
                m.gang_wait.observe(now.duration_since(since).as_secs_f64());
            }
        }
    }

    /// Refreshes the pending-pod gauges when [`GAUGE_INTERVAL`] has passed (or `force`).
    pub(super) fn gauges(&mut self, scheduler: &Scheduler, force: bool) {
        let Some(metrics) = self.metrics.clone() else {
            return;
        };
        let now = Instant::now();
        if !force
            && self
                .refreshed
                .is_some_and(|t| now.duration_since(t) < GAUGE_INTERVAL)
        {
            return;
        }
        self.refreshed = Some(now);
        let m = &metrics.scheduler;
        let queue = scheduler.queue();
        for (part, len) in [
            ("active", queue.active_len()),
            ("backoff", queue.backoff_len()),
            ("unschedulable", queue.unschedulable_len()),
        ] {
            m.pending.with_label_values(&[part]).set(len as i64);
        }
        let snapshot = scheduler.snapshot();
        let mut counts: HashMap<(String, String), i64> = HashMap::new();
        for pod in snapshot.pods().filter(|p| p.node.is_none()) {
            let queue = snapshot
                .queue_of(pod)
                .map(|q| q.name.clone())
                .unwrap_or_default();
            let reason = self.rejected_by.get(&pod.key).copied().unwrap_or("Queued");
            *counts.entry((queue, reason.to_string())).or_default() += 1;
        }
        for old in std::mem::take(&mut self.series) {
            if !counts.contains_key(&old) {
                m.pending_by_reason
                    .with_label_values(&[old.0.as_str(), old.1.as_str()])
                    .set(0);
            }
        }
        for ((queue, reason), n) in counts {
            m.pending_by_reason
                .with_label_values(&[queue.as_str(), reason.as_str()])
                .set(n);
            self.series.push((queue, reason));
        }
    }
}
