//! Gang scheduling for `PodGroup`s: all or nothing, packed by network topology.
//!
//! - PreFilter: a member waits (unresolvable) until `minMember` pods of its group
//!   exist; the first member of an attempt picks the gang's topology domain
//!   ([`domain::choose`]) and checks that the cluster has room for the whole gang, so a
//!   gang that cannot fit never reserves anything. Later members are confined to the
//!   domain (a preferred domain is relaxed when nothing in it fits).
//! - Permit: reserved members wait until `minMember` are placed, then all are allowed
//!   together; a timeout rejects the whole gang.
//! - PostFilter: when a member cannot be placed, the waiting members are rejected so
//!   their reservations go back (no gang holds part of the cluster while waiting, which
//!   is what keeps two big gangs from deadlocking: one is placed, the other waits).
//! - Score: nodes close (same switch, rack, block) to members already placed.

pub mod domain;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Mutex;

use coxswain_api::coxswain::TopologyMode;

use super::super::cycle_state::{CycleState, RELAX_TOPOLOGY};
use super::super::framework::WaitingPods;
use super::super::framework::{
    Diagnosis, NodeFilter, PermitDecision, PermitPlugin, Plugin, PostFilterPlugin,
    PostFilterResult, PreFilterPlugin, PreFilterResult, ScorePlugin,
};
use super::super::model::{NodeInfo, PodInfo, PodKey};
use super::super::snapshot::{ClusterSnapshot, EventMask};
use super::super::status::Status;
use domain::Domain;

const NAME: &str = "Gang";
const ANCHOR_KEY: &str = "Gang/anchor";

/// The gang plugin; remembers each gang's chosen domain for its current attempt.
#[derive(Debug, Default)]
pub struct Gang {
    domains: Mutex<HashMap<PodKey, Option<Domain>>>,
}

impl Gang {
    fn domains(&self) -> std::sync::MutexGuard<'_, HashMap<PodKey, Option<Domain>>> {
        self.domains.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The domain chosen for gang `group`'s current attempt.
    pub fn domain_of(&self, group: &str) -> Option<Domain> {
        self.domains().get(group).cloned().flatten()
    }
}

impl Plugin for Gang {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cured_by(&self) -> EventMask {
        EventMask::CAPACITY
            .union(EventMask::POD_ADDED)
            .union(EventMask::POD_GROUP_CHANGED)
    }
}

impl PreFilterPlugin for Gang {
    fn pre_filter(
        &self,
        snapshot: &ClusterSnapshot,
        state: &mut CycleState,
        pod: &PodInfo,
    ) -> Result<PreFilterResult, Status> {
        let Some(group_key) = &pod.group else {
            return Ok(PreFilterResult::default());
        };
        let group = snapshot.group(group_key);
        let Some(spec) = group.and_then(|g| g.spec.as_ref()) else {
            return Err(Status::unresolvable(
                NAME,
                format!("pod group {group_key} not found"),
            ));
        };
        let group = group.expect("spec implies group");
        let min = spec.min_member as usize;
        if group.members.len() < min {
            return Err(Status::unresolvable(
                NAME,
                format!(
                    "pod group {group_key} has {} of {min} pods",
                    group.members.len()
                ),
            ));
        }
        let placed = group.placed.len();
        if placed >= min {
            return Ok(PreFilterResult::default());
        }
        if let Some(anchor) = group
            .placed
            .iter()
            .filter_map(|p| snapshot.pod(p)?.node.as_deref())
            .find_map(|n| snapshot.node(n))
        {
            state.write(ANCHOR_KEY, anchor.domains);
        }
        let domain = if placed == 0 {
            let d = domain::choose(snapshot, pod, min, spec.topology.as_ref(), NAME)?;
            self.domains().insert(group_key.clone(), d.clone());
            d
        } else {
            self.domain_of(group_key)
        };
        let required = spec
            .topology
            .as_ref()
            .is_some_and(|t| t.mode == TopologyMode::Required);
        match domain {
            Some(d) if required || !state.is_relaxed(RELAX_TOPOLOGY) => {
                if !required {
                    state.allow_relaxing(RELAX_TOPOLOGY);
                }
                Ok(PreFilterResult {
                    nodes: Some(domain::members(snapshot, &d)),
                })
            }
            _ => Ok(PreFilterResult::default()),
        }
    }
}

impl ScorePlugin for Gang {
    fn score(&self, _: &ClusterSnapshot, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(anchor) = state.read::<[u32; 3]>(ANCHOR_KEY) else {
            return 0;
        };
        for (slot, score) in [(2, 100), (1, 66), (0, 33)] {
            if anchor[slot] != 0 && anchor[slot] == node.domains[slot] {
                return score;
            }
        }
        0
    }
}

impl PermitPlugin for Gang {
    fn permit(
        &self,
        snapshot: &ClusterSnapshot,
        pod: &PodInfo,
        _: &str,
        waiting: &mut WaitingPods,
    ) -> PermitDecision {
        let Some(group_key) = &pod.group else {
            return PermitDecision::Allow;
        };
        let Some(group) = snapshot.group(group_key) else {
            return PermitDecision::Allow;
        };
        let Some(spec) = &group.spec else {
            return PermitDecision::Reject(Status::unresolvable(NAME, "pod group deleted"));
        };
        if group.placed.len() >= spec.min_member as usize {
            for member in waiting.group_members(group_key) {
                waiting.allow(NAME, &member);
            }
            self.domains().remove(group_key);
            PermitDecision::Allow
        } else {
            PermitDecision::Wait(spec.timeout)
        }
    }
}

impl PostFilterPlugin for Gang {
    fn post_filter(
        &self,
        snapshot: &ClusterSnapshot,
        pod: &PodInfo,
        _: &Diagnosis,
        waiting: &mut WaitingPods,
        _: &NodeFilter<'_>,
    ) -> Result<PostFilterResult, Status> {
        let Some(group_key) = &pod.group else {
            return Err(Status::unschedulable(NAME, "not a gang member"));
        };
        let satisfied = snapshot.group(group_key).is_some_and(|g| {
            g.spec
                .as_ref()
                .is_some_and(|s| g.placed.len() >= s.min_member as usize)
        });
        if !satisfied {
            let reason = format!(
                "gang member {} cannot be placed; releasing the gang",
                pod.key
            );
            for member in waiting.group_members(group_key) {
                waiting.reject(&member, Status::unschedulable(NAME, reason.clone()));
            }
            self.domains().remove(group_key);
        }
        Err(Status::unschedulable(
            NAME,
            "the gang cannot be placed as a whole now",
        ))
    }
}
