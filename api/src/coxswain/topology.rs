//! Network-topology constraints shared by training jobs and pod groups.
//!
//! Nodes carry labels `topology.coxswain.dev/{block,rack,switch}`; a constraint asks the
//! scheduler to place a whole gang inside one domain of the given level.

use serde::{Deserialize, Serialize};

/// Prefix of the node labels naming a node's topology domains.
pub const TOPOLOGY_LABEL_PREFIX: &str = "topology.coxswain.dev/";

/// How a gang's pods must be packed across the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyConstraint {
    /// The domain every pod of the gang must share.
    pub level: TopologyLevel,
    /// Whether placement fails (`Required`) or degrades (`Preferred`) when impossible.
    #[serde(default)]
    pub mode: TopologyMode,
}

/// A network-topology level, from widest to narrowest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopologyLevel {
    /// A block of racks sharing a spine.
    Block,
    /// One rack.
    Rack,
    /// One leaf switch.
    Switch,
    /// One node.
    Node,
}

impl TopologyLevel {
    /// The node label holding a node's domain at this level (`kubernetes.io/hostname` for
    /// [`TopologyLevel::Node`]).
    pub fn node_label(self) -> &'static str {
        match self {
            TopologyLevel::Block => "topology.coxswain.dev/block",
            TopologyLevel::Rack => "topology.coxswain.dev/rack",
            TopologyLevel::Switch => "topology.coxswain.dev/switch",
            TopologyLevel::Node => "kubernetes.io/hostname",
        }
    }
}

/// Whether a topology constraint is a hard requirement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopologyMode {
    /// The gang is not placed unless it fits in one domain.
    Required,
    /// The scheduler packs as tightly as it can.
    #[default]
    Preferred,
}
