//! The [`Scheduler`]: snapshot, queue, framework, waiting pods and binder, driven one
//! pod at a time by [`Scheduler::schedule_one`] (see `cycle.rs`) and fed by
//! [`Scheduler::handle`] with cluster events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::binder::{Binder, Binding, InMemoryBinder};
use super::clock::Clock;
use super::framework::{Framework, WaitingPods};
use super::model::PodKey;
use super::queue::{Backoff, SchedulingQueue};
use super::snapshot::{ClusterEvent, ClusterSnapshot, EventMask, SnapshotError};
use super::status::Status;

/// Tuning knobs, with kube-scheduler's defaults.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Back-off after failed attempts.
    pub backoff: Backoff,
    /// Parked pods are retried after this long even without a matching event.
    pub max_unschedulable: Duration,
    /// Share of nodes to find feasible before scoring; `None`: adaptive
    /// (`50 − nodes/125` %, at least 5 %), as kube's `percentageOfNodesToScore`.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Never stop searching before this many feasible nodes (kube: 100).
    pub min_feasible_nodes: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            backoff: Backoff::default(),
            max_unschedulable: Duration::from_secs(300),
            percentage_of_nodes_to_score: None,
            min_feasible_nodes: 100,
        }
    }
}

/// What one scheduling cycle did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CycleResult {
    /// The pod was bound to the node.
    Bound(String),
    /// The pod is reserved on the node and waits at Permit for its gang.
    Waiting(String),
    /// The pod could not be placed.
    Unschedulable(Status),
    /// Victims are being evicted to make room on the nominated node.
    Preempting {
        /// The nominated node.
        node: String,
        /// Evicted pods.
        victims: Vec<PodKey>,
    },
    /// The popped pod was gone or already placed.
    Skipped,
}

/// The report of one cycle: the pod's result plus bindings and releases it caused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleReport {
    /// The pod popped.
    pub pod: PodKey,
    /// What happened to it.
    pub result: CycleResult,
    /// Every binding written in this cycle (gang members allowed together included).
    pub bound: Vec<Binding>,
    /// Reserved pods released in this cycle (rejected gang members).
    pub released: Vec<PodKey>,
    /// Why no node fit, Kubernetes-style (`0/3 nodes are available: 2 Insufficient
    /// nvidia.com/gpu, 1 node(s) were unschedulable.`), when the pod's filters failed.
    pub failure: Option<String>,
    /// Wall time per extension point run in this cycle (`PreFilter`, `Filter` — every
    /// node tried, `Score`, `Reserve`, `Permit`, `Bind`, `PostFilter`), for metrics.
    pub timings: Vec<(&'static str, Duration)>,
}

impl CycleReport {
    /// Adds `took` to extension point `point`'s time in this cycle.
    pub(super) fn time(&mut self, point: &'static str, took: Duration) {
        match self.timings.iter_mut().find(|(p, _)| *p == point) {
            Some((_, d)) => *d += took,
            None => self.timings.push((point, took)),
        }
    }
}

/// The scheduler.
pub struct Scheduler {
    pub(super) snapshot: ClusterSnapshot,
    pub(super) queue: SchedulingQueue,
    pub(super) framework: Framework,
    pub(super) waiting: WaitingPods,
    pub(super) binder: Arc<dyn Binder>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) config: SchedulerConfig,
    pub(super) next_start: usize,
    pub(super) nominated: HashMap<PodKey, String>,
}

impl Scheduler {
    /// A scheduler over an empty snapshot.
    pub fn new(
        framework: Framework,
        binder: Arc<dyn Binder>,
        clock: Arc<dyn Clock>,
        config: SchedulerConfig,
    ) -> Self {
        Scheduler {
            snapshot: ClusterSnapshot::new(),
            queue: SchedulingQueue::new(config.backoff, config.max_unschedulable),
            framework,
            waiting: WaitingPods::default(),
            binder,
            clock,
            config,
            next_start: 0,
            nominated: HashMap::new(),
        }
    }

    /// The snapshot (read-only).
    pub fn snapshot(&self) -> &ClusterSnapshot {
        &self.snapshot
    }

    /// The scheduling queue (read-only).
    pub fn queue(&self) -> &SchedulingQueue {
        &self.queue
    }

    /// Pods held at Permit.
    pub fn waiting(&self) -> &WaitingPods {
        &self.waiting
    }

    /// Applies a cluster event to the snapshot and wakes the pods it may help.
    pub fn handle(&mut self, event: ClusterEvent) -> Result<(), SnapshotError> {
        let now = self.clock.now();
        let kind = event.kind();
        match event {
            ClusterEvent::PodAdded(pod) | ClusterEvent::PodUpdated(pod) => {
                let key = pod.key.clone();
                let gang = pod.group.is_some();
                self.snapshot.apply(ClusterEvent::PodAdded(pod))?;
                let placed = self.snapshot.pod(&key).is_some_and(|p| p.node.is_some());
                if placed {
                    if !self.snapshot.is_assumed(&key) {
                        self.queue.delete(&key);
                        self.nominated.remove(&key);
                    }
                } else if !self.queue.contains(&key)
                    && let Some(p) = self.snapshot.pod(&key)
                {
                    let sort_key = self.framework.queue_sort.sort_key(&self.snapshot, p);
                    self.queue.add(sort_key);
                }
                if gang {
                    self.queue.on_event(kind, now);
                }
            }
            ClusterEvent::PodDeleted(key) => {
                self.queue.delete(&key);
                self.nominated.remove(&key);
                if self.waiting.contains(&key) {
                    self.waiting
                        .reject(&key, Status::unschedulable("Scheduler", "pod deleted"));
                }
                let mut released = Vec::new();
                self.release_rejected(now, &mut released);
                self.snapshot.apply(ClusterEvent::PodDeleted(key))?;
                self.queue.on_event(kind, now);
            }
            ClusterEvent::PodGroupChanged(spec) => {
                let key = spec.key.clone();
                self.snapshot.apply(ClusterEvent::PodGroupChanged(spec))?;
                // Members queued before their group was seen get the gang's sort key.
                let members: Vec<PodKey> = self
                    .snapshot
                    .group(&key)
                    .map(|g| g.members.iter().cloned().collect())
                    .unwrap_or_default();
                for m in members {
                    if let Some(p) = self.snapshot.pod(&m)
                        && p.node.is_none()
                        && self.queue.contains(&m)
                    {
                        let k = self.framework.queue_sort.sort_key(&self.snapshot, p);
                        self.queue.add(k);
                    }
                }
                self.queue.on_event(kind, now);
            }
            other => {
                self.snapshot.apply(other)?;
                self.queue.on_event(kind, now);
            }
        }
        Ok(())
    }

    /// Housekeeping on the clock: rejects gangs past their Permit timeout and moves
    /// pods whose back-off ended to active. Returns the pods released.
    pub fn tick(&mut self) -> Vec<PodKey> {
        let now = self.clock.now();
        self.waiting.expire(now, "Gang");
        let mut released = Vec::new();
        self.release_rejected(now, &mut released);
        self.queue.flush(now);
        released
    }

    /// The next instant something is due (a back-off or a Permit deadline).
    pub fn next_wakeup(&self) -> Option<Duration> {
        match (
            self.queue.next_backoff_expiry(),
            self.waiting.next_deadline(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Schedules until the active queue is empty, feeding the in-memory binder's
    /// evictions back as pod deletions (the simulator's stand-in for the watch).
    pub fn run_in_memory(&mut self, binder: &InMemoryBinder) -> Vec<CycleReport> {
        let mut reports = Vec::new();
        loop {
            self.tick();
            let Some(report) = self.schedule_one() else {
                break;
            };
            reports.push(report);
            for victim in binder.take_evicted() {
                // The victim may already be gone; nothing else can fail here.
                let _ = self.handle(ClusterEvent::PodDeleted(victim));
            }
        }
        reports
    }

    /// Events that may cure a rejection by `plugin`.
    pub(super) fn cure(&self, plugin: &str) -> EventMask {
        self.framework.cured_by(plugin)
    }
}
