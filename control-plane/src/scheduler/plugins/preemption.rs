//! PostFilter: priority preemption that never splits a gang.
//!
//! Victims come in *units*: a pod on its own, or every placed pod of a gang (across
//! all its nodes) — a gang is evicted whole or not at all. On each candidate node the
//! plugin removes every lower-priority unit that touches it, checks that the pod then
//! fits, and gives back ("reprieves") units from the highest priority down while it
//! still fits. The node whose victims are fewest, then of the lowest priority, wins.

use std::collections::HashSet;

use super::super::framework::{
    Diagnosis, NodeFilter, Plugin, PostFilterPlugin, PostFilterResult, WaitingPods,
};
use super::super::model::{NodeInfo, PodInfo, PodKey};
use super::super::snapshot::ClusterSnapshot;
use super::super::status::{Code, Status};

const NAME: &str = "DefaultPreemption";

/// Priority preemption over whole victim units.
#[derive(Debug)]
pub struct Preemption {
    /// Stop after this many candidate nodes with a working victim set.
    pub max_candidates: usize,
}

impl Default for Preemption {
    fn default() -> Self {
        Preemption {
            max_candidates: 100,
        }
    }
}

/// How good a victim set is (smaller is better): victim count, highest victim
/// priority, sum of victim priorities.
type Rank = (usize, i32, i64);

/// A set of pods evicted together, with its (highest) priority.
#[derive(Debug, Clone)]
struct Unit {
    pods: Vec<PodKey>,
    priority: i32,
}

/// The unit of `pod`: itself, or every placed pod of its gang. `None` when some pod of
/// the unit may not be evicted (priority too high, or still waiting at Permit).
fn unit_of(snapshot: &ClusterSnapshot, pod: &PodInfo, below: i32) -> Option<Unit> {
    let pods: Vec<PodKey> = match pod.group.as_deref().and_then(|g| snapshot.group(g)) {
        Some(g) => g.placed.iter().cloned().collect(),
        None => vec![pod.key.clone()],
    };
    let mut priority = i32::MIN;
    for key in &pods {
        let p = snapshot.pod(key)?;
        let waiting = snapshot.is_assumed(key) && !snapshot.is_binding_finished(key);
        if p.priority >= below || waiting {
            return None;
        }
        priority = priority.max(p.priority);
    }
    Some(Unit { pods, priority })
}

fn without(snapshot: &ClusterSnapshot, node: &NodeInfo, units: &[&Unit]) -> NodeInfo {
    let mut n = node.clone();
    for unit in units {
        for key in &unit.pods {
            if let Some(p) = snapshot.pod(key)
                && p.node.as_deref() == Some(node.name.as_str())
            {
                n.remove_pod(key, &p.requests, &p.devices);
            }
        }
    }
    n
}

/// The victims that let `pod` onto `node`, or `None`.
fn victims_on(
    snapshot: &ClusterSnapshot,
    pod: &PodInfo,
    node: &NodeInfo,
    filter: &NodeFilter<'_>,
) -> Option<Vec<Unit>> {
    let mut seen = HashSet::new();
    let mut units: Vec<Unit> = Vec::new();
    for key in &node.pods {
        let p = snapshot.pod(key)?;
        if p.priority >= pod.priority {
            continue;
        }
        let id = p.group.clone().unwrap_or_else(|| p.key.clone());
        if seen.insert(id)
            && let Some(u) = unit_of(snapshot, p, pod.priority)
        {
            units.push(u);
        }
    }
    if units.is_empty()
        || !filter(&without(snapshot, node, &units.iter().collect::<Vec<_>>())).is_success()
    {
        return None;
    }
    // Reprieve: most valuable first (highest priority, then largest unit).
    units.sort_by_key(|u| {
        (
            std::cmp::Reverse(u.priority),
            std::cmp::Reverse(u.pods.len()),
        )
    });
    let mut evict: Vec<Unit> = Vec::new();
    for i in 0..units.len() {
        let rest: Vec<&Unit> = evict.iter().chain(units[i + 1..].iter()).collect();
        if !filter(&without(snapshot, node, &rest)).is_success() {
            evict.push(units[i].clone());
        }
    }
    Some(evict)
}

impl Plugin for Preemption {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PostFilterPlugin for Preemption {
    fn post_filter(
        &self,
        snapshot: &ClusterSnapshot,
        pod: &PodInfo,
        diagnosis: &Diagnosis,
        _: &mut WaitingPods,
        filter: &NodeFilter<'_>,
    ) -> Result<PostFilterResult, Status> {
        if pod.never_preempts {
            return Err(Status::unresolvable(
                NAME,
                "the pod's preemptionPolicy is Never",
            ));
        }
        let candidates: Vec<usize> = match &diagnosis.pre_filter {
            Some(s) if s.code == Code::Unschedulable => (0..snapshot.nodes().len()).collect(),
            Some(_) => {
                return Err(Status::unresolvable(
                    NAME,
                    "PreFilter rejection preemption cannot cure",
                ));
            }
            None => diagnosis
                .rejected
                .iter()
                .filter(|(_, s)| s.code == Code::Unschedulable)
                .map(|(i, _)| *i)
                .collect(),
        };
        let mut best: Option<(Rank, usize, Vec<Unit>)> = None;
        let mut found = 0;
        for i in candidates {
            let node = &snapshot.nodes()[i];
            let Some(units) = victims_on(snapshot, pod, node, filter) else {
                continue;
            };
            let count: usize = units.iter().map(|u| u.pods.len()).sum();
            let top = units.iter().map(|u| u.priority).max().unwrap_or(i32::MIN);
            let sum: i64 = units
                .iter()
                .map(|u| i64::from(u.priority) * u.pods.len() as i64)
                .sum();
            let rank = (count, top, sum);
            if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
                best = Some((rank, i, units));
            }
            found += 1;
            if found >= self.max_candidates {
                break;
            }
        }
        let Some((_, i, units)) = best else {
            return Err(Status::unschedulable(
                NAME,
                "no lower-priority victims make room",
            ));
        };
        Ok(PostFilterResult {
            nominated: Some(snapshot.nodes()[i].name.clone()),
            victims: units.into_iter().flat_map(|u| u.pods).collect(),
        })
    }
}
