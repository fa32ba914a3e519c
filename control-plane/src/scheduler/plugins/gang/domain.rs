//! Which network-topology domain a gang goes into: the narrowest level (node, switch,
//! rack, block) that has a domain with room for the whole gang, and at that level the
//! domain with the least room that still suffices (best fit, leaving large domains for
//! large gangs).

use std::collections::HashMap;

use coxswain_api::coxswain::{TopologyConstraint, TopologyLevel, TopologyMode};

use super::super::super::model::{NodeInfo, PodInfo};
use super::super::super::snapshot::ClusterSnapshot;
use super::super::super::status::Status;

/// A chosen domain: a level slot (`[block, rack, switch]`) and domain id, or one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    /// Domain `id` at level slot `slot`.
    Level {
        /// 0 block, 1 rack, 2 switch.
        slot: usize,
        /// Interned domain id.
        id: u32,
    },
    /// A single node.
    Node(String),
}

/// How many copies of `pod` fit on `node` now (resources and GPUs only).
pub fn member_capacity(pod: &PodInfo, node: &NodeInfo) -> usize {
    if node.unschedulable {
        return 0;
    }
    let free = |alloc: i64, used: i64, need: i64| {
        if need <= 0 {
            usize::MAX
        } else {
            ((alloc - used).max(0) / need) as usize
        }
    };
    let r = &pod.requests;
    let mut n = free(node.allocatable.pods, node.requested.pods, 1)
        .min(free(
            node.allocatable.cpu_milli,
            node.requested.cpu_milli,
            r.cpu_milli,
        ))
        .min(free(
            node.allocatable.memory,
            node.requested.memory,
            r.memory,
        ));
    if pod.gpus > 0 {
        n = n.min(node.idle_gpus(&pod.gpu_models) / usize::from(pod.gpus));
    } else if pod.gpu_milli > 0 {
        let shares: usize = node
            .gpus
            .iter()
            .filter(|d| d.model_matches(&pod.gpu_models))
            .map(|d| usize::from(d.free_milli() / pod.gpu_milli))
            .sum();
        n = n.min(shares);
    }
    n
}

const NAMES: [&str; 4] = ["block", "rack", "switch", "node"];

/// Picks the domain for `remaining` more members shaped like `pod`.
///
/// `Err` when the cluster cannot hold them at all, or a required level has no domain
/// with room; `Ok(None)` when a preference cannot be met (the gang spreads).
pub fn choose(
    snapshot: &ClusterSnapshot,
    pod: &PodInfo,
    remaining: usize,
    constraint: Option<&TopologyConstraint>,
    plugin: &'static str,
) -> Result<Option<Domain>, Status> {
    let caps: Vec<usize> = snapshot
        .nodes()
        .iter()
        .map(|n| member_capacity(pod, n))
        .collect();
    let total: usize = caps.iter().fold(0usize, |a, &c| a.saturating_add(c));
    if total < remaining {
        return Err(Status::unschedulable(
            plugin,
            format!(
                "gang needs room for {remaining} more members; the cluster has room for {total}"
            ),
        ));
    }
    let widest = match constraint.map(|c| c.level) {
        None => 0,
        Some(TopologyLevel::Block) => 0,
        Some(TopologyLevel::Rack) => 1,
        Some(TopologyLevel::Switch) => 2,
        Some(TopologyLevel::Node) => 3,
    };
    let required = constraint.is_some_and(|c| c.mode == TopologyMode::Required);
    for slot in (widest..=3).rev() {
        let best = if slot == 3 {
            caps.iter()
                .enumerate()
                .filter(|(_, c)| **c >= remaining)
                .min_by_key(|(i, c)| (**c, *i))
                .map(|(i, _)| Domain::Node(snapshot.nodes()[i].name.clone()))
        } else {
            let mut per: HashMap<u32, usize> = HashMap::new();
            for (node, &c) in snapshot.nodes().iter().zip(&caps) {
                let id = node.domains[slot];
                if id != 0 && c > 0 {
                    let e = per.entry(id).or_default();
                    *e = e.saturating_add(c);
                }
            }
            per.into_iter()
                .filter(|(_, c)| *c >= remaining)
                .min_by_key(|(id, c)| (*c, *id))
                .map(|(id, _)| Domain::Level { slot, id })
        };
        if best.is_some() {
            return Ok(best);
        }
    }
    if required {
        return Err(Status::unschedulable(
            plugin,
            format!(
                "no {} domain has room for the gang's {remaining} members",
                NAMES[widest]
            ),
        ));
    }
    Ok(None)
}

/// Node indices of `domain`.
pub fn members(snapshot: &ClusterSnapshot, domain: &Domain) -> Vec<usize> {
    match domain {
        Domain::Level { id, .. } => snapshot.topology().members(*id).to_vec(),
        Domain::Node(name) => snapshot.node_index(name).into_iter().collect(),
    }
}
