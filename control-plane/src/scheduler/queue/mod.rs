//! The scheduling queue: active (ordered by QueueSort), back-off, and unschedulable.
//!
//! As in kube-scheduler, a pod that failed goes to *unschedulable* with the set of
//! event kinds that could cure the plugins that rejected it; a matching cluster event
//! moves it to back-off (or straight to active once its back-off has passed). If an
//! event arrived while the pod was being scheduled, it goes to back-off directly, so a
//! cure that raced the attempt is not missed. Pods parked longer than
//! `max_unschedulable` are retried anyway.

mod backoff;

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub use backoff::Backoff;

use super::model::PodKey;
use super::snapshot::EventMask;

/// Ordering key of the active queue (smaller first), produced by the QueueSort plugin.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey {
    /// Pods of higher-priority `Queue`s first (0 without a queue).
    pub queue_priority: Reverse<i32>,
    /// Higher priority first.
    pub priority: Reverse<i32>,
    /// Earlier gangs (or pods) first; gang members share their gang's value.
    pub seq: u64,
    /// Keeps a gang's members together.
    pub group: Option<PodKey>,
    /// Creation order of the pod itself.
    pub pod_seq: u64,
    /// The pod, for uniqueness.
    pub pod: PodKey,
}

#[derive(Debug)]
struct Entry {
    key: QueueKey,
    attempts: u32,
    popped_at_move: u64,
    in_flight: bool,
}

/// Pending pods waiting for a scheduling attempt.
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    active: BTreeMap<QueueKey, ()>,
    backoff_q: BTreeMap<(Duration, PodKey), ()>,
    backoff_until: HashMap<PodKey, Duration>,
    unschedulable: HashMap<PodKey, (EventMask, Duration)>,
    entries: HashMap<PodKey, Entry>,
    backoff: Backoff,
    max_unschedulable: Duration,
    move_cycle: u64,
    last_scan: Duration,
}

impl SchedulingQueue {
    /// An empty queue with `backoff`; parked pods are retried after `max_unschedulable`.
    pub fn new(backoff: Backoff, max_unschedulable: Duration) -> Self {
        SchedulingQueue {
            backoff,
            max_unschedulable,
            ..Default::default()
        }
    }

    /// Adds a new pending pod to the active queue (or re-keys a known one).
    pub fn add(&mut self, key: QueueKey) {
        let attempts = self.entries.get(&key.pod).map_or(0, |e| e.attempts);
        self.delete(&key.pod);
        self.active.insert(key.clone(), ());
        let entry = Entry {
            key: key.clone(),
            attempts,
            popped_at_move: 0,
            in_flight: false,
        };
        self.entries.insert(key.pod, entry);
    }

    /// Forgets a pod (deleted, or bound).
    pub fn delete(&mut self, pod: &str) {
        if let Some(e) = self.entries.remove(pod) {
            self.active.remove(&e.key);
            self.unschedulable.remove(pod);
            if let Some(until) = self.backoff_until.remove(pod) {
                self.backoff_q.remove(&(until, e.key.pod));
            }
        }
    }

    fn detach(&mut self, pod: &str) -> Option<&mut Entry> {
        let e = self.entries.get_mut(pod)?;
        self.active.remove(&e.key);
        self.unschedulable.remove(pod);
        if let Some(until) = self.backoff_until.remove(pod) {
            self.backoff_q.remove(&(until, e.key.pod.clone()));
        }
        Some(e)
    }

    /// The next pod to schedule, with its attempt number (1 for the first).
    pub fn pop(&mut self) -> Option<(PodKey, u32)> {
        let (key, ()) = self.active.pop_first()?;
        let e = self.entries.get_mut(&key.pod)?;
        e.attempts += 1;
        e.popped_at_move = self.move_cycle;
        e.in_flight = true;
        Some((key.pod, e.attempts))
    }

    /// Parks a pod that failed because of plugins curable by `cure` events.
    pub fn add_unschedulable(&mut self, pod: &str, cure: EventMask, now: Duration) {
        let moved = self.move_cycle;
        let Some(e) = self.detach(pod) else {
            return;
        };
        let raced = e.in_flight && e.popped_at_move < moved;
        e.in_flight = false;
        let key = e.key.pod.clone();
        if raced {
            self.add_backoff(pod, now);
        } else {
            self.unschedulable.insert(key, (cure, now));
        }
    }

    /// Puts a pod in back-off (an error, a bind conflict, or a cure arrived).
    pub fn add_backoff(&mut self, pod: &str, now: Duration) {
        let backoff = self.backoff;
        let Some(e) = self.detach(pod) else {
            return;
        };
        e.in_flight = false;
        let until = now + backoff.after(e.attempts.max(1));
        let key = e.key.pod.clone();
        self.backoff_q.insert((until, key.clone()), ());
        self.backoff_until.insert(key, until);
    }

    /// A cluster event of kind `kind` happened: wake the parked pods it may help.
    pub fn on_event(&mut self, kind: EventMask, now: Duration) {
        self.move_cycle += 1;
        self.wake(kind, now);
    }

    /// Reserved pods were released (their capacity is free again, but no cluster event
    /// says so): wakes the parked pods `kind` may help, as kube does when an assumed pod
    /// is forgotten. Pods in flight are not treated as raced by it.
    pub fn on_release(&mut self, kind: EventMask, now: Duration) {
        self.wake(kind, now);
    }

    fn wake(&mut self, kind: EventMask, now: Duration) {
        let woken: Vec<PodKey> = self
            .unschedulable
            .iter()
            .filter(|(_, (cure, _))| cure.intersects(kind))
            .map(|(k, _)| k.clone())
            .collect();
        for pod in woken {
            self.add_backoff(&pod, now);
        }
        self.flush(now);
    }

    /// Moves pods whose back-off expired, and pods parked too long, to active.
    pub fn flush(&mut self, now: Duration) {
        while let Some(((until, _), ())) = self.backoff_q.first_key_value() {
            if *until > now {
                break;
            }
            let ((_, pod), ()) = self.backoff_q.pop_first().expect("peeked");
            self.backoff_until.remove(&pod);
            if let Some(e) = self.entries.get(&pod) {
                self.active.insert(e.key.clone(), ());
            }
        }
        if now.saturating_sub(self.last_scan) >= self.max_unschedulable / 4 {
            self.last_scan = now;
            let max = self.max_unschedulable;
            let stale: Vec<PodKey> = self
                .unschedulable
                .iter()
                .filter(|(_, (_, since))| now.saturating_sub(*since) >= max)
                .map(|(k, _)| k.clone())
                .collect();
            for pod in stale {
                self.unschedulable.remove(&pod);
                if let Some(e) = self.entries.get(&pod) {
                    self.active.insert(e.key.clone(), ());
                }
            }
        }
    }

    /// When the earliest back-off ends, if any pod is backing off.
    pub fn next_backoff_expiry(&self) -> Option<Duration> {
        self.backoff_q.first_key_value().map(|((t, _), ())| *t)
    }

    /// Pods in the active queue.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Pods in back-off.
    pub fn backoff_len(&self) -> usize {
        self.backoff_q.len()
    }

    /// Pods parked as unschedulable.
    pub fn unschedulable_len(&self) -> usize {
        self.unschedulable.len()
    }

    /// Whether the pod is in the queue in any state.
    pub fn contains(&self, pod: &str) -> bool {
        self.entries.contains_key(pod)
    }

    /// Whether the pod is parked as unschedulable.
    pub fn is_unschedulable(&self, pod: &str) -> bool {
        self.unschedulable.contains_key(pod)
    }
}

#[cfg(test)]
mod tests;
