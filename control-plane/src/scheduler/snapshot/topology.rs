//! Network-topology domains from node labels `topology.coxswain.dev/{block,rack,switch}`.
//!
//! Label values are interned to small integers so that gang packing compares numbers,
//! and each domain keeps the list of its nodes.

use std::collections::HashMap;

use coxswain_api::coxswain::TopologyLevel;

use super::super::model::NodeInfo;

/// The levels indexed, widest first; `NodeInfo::domains` follows this order.
pub const LEVELS: [TopologyLevel; 3] = [
    TopologyLevel::Block,
    TopologyLevel::Rack,
    TopologyLevel::Switch,
];

/// The position of `level` in [`LEVELS`] (`None` for [`TopologyLevel::Node`]).
pub fn level_slot(level: TopologyLevel) -> Option<usize> {
    LEVELS.iter().position(|l| *l == level)
}

/// Interned topology domains and their member nodes.
#[derive(Debug, Default)]
pub struct DomainIndex {
    ids: HashMap<(usize, String), u32>,
    /// By domain id (0 unused): member node indices.
    members: Vec<Vec<usize>>,
    /// By domain id: level slot.
    levels: Vec<usize>,
}

impl DomainIndex {
    fn intern(&mut self, slot: usize, value: &str) -> u32 {
        if self.members.is_empty() {
            self.members.push(Vec::new());
            self.levels.push(usize::MAX);
        }
        if let Some(&id) = self.ids.get(&(slot, value.to_string())) {
            return id;
        }
        let id = self.members.len() as u32;
        self.ids.insert((slot, value.to_string()), id);
        self.members.push(Vec::new());
        self.levels.push(slot);
        id
    }

    /// Records node `node` (at index `i`) in its domains and sets `node.domains`.
    pub fn add(&mut self, node: &mut NodeInfo, i: usize) {
        for (slot, level) in LEVELS.iter().enumerate() {
            node.domains[slot] = match node.labels.get(level.node_label()) {
                Some(v) => {
                    let id = self.intern(slot, v);
                    self.members[id as usize].push(i);
                    id
                }
                None => 0,
            };
        }
    }

    /// Rebuilds the member lists after nodes moved or changed labels.
    pub fn rebuild(&mut self, nodes: &mut [NodeInfo]) {
        for m in &mut self.members {
            m.clear();
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            self.add(node, i);
        }
    }

    /// Node indices of domain `id`.
    pub fn members(&self, id: u32) -> &[usize] {
        self.members.get(id as usize).map_or(&[], |m| m.as_slice())
    }

    /// Every domain id at level slot `slot`.
    pub fn domains_at(&self, slot: usize) -> impl Iterator<Item = u32> + '_ {
        self.levels
            .iter()
            .enumerate()
            .filter(move |(_, l)| **l == slot)
            .map(|(id, _)| id as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_labels_per_level() {
        let mut idx = DomainIndex::default();
        let mut nodes: Vec<NodeInfo> = (0..4)
            .map(|i| {
                let mut n = NodeInfo::default();
                n.labels
                    .insert("topology.coxswain.dev/rack".into(), format!("r{}", i / 2));
                n.labels
                    .insert("topology.coxswain.dev/block".into(), "b0".into());
                n
            })
            .collect();
        idx.rebuild(&mut nodes);
        assert_eq!(nodes[0].domains[1], nodes[1].domains[1]);
        assert_ne!(nodes[1].domains[1], nodes[2].domains[1]);
        assert_eq!(nodes[0].domains[2], 0);
        assert_eq!(idx.members(nodes[0].domains[0]).len(), 4);
        assert_eq!(idx.domains_at(1).count(), 2);
        assert_eq!(level_slot(TopologyLevel::Switch), Some(2));
    }
}
