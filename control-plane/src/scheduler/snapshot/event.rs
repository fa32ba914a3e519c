//! Cluster events that feed the snapshot, and the event kinds plugins register for.
//!
//! The API-server watch translates Node, Pod, ResourceSlice, PodGroup, Queue and
//! PriorityClass watch events into [`ClusterEvent`]s; the simulator emits them directly.

use super::super::model::{GangSpec, GpuDevice, NodeInfo, PodInfo, PodKey, QueueInfo};

/// A change in the cluster the scheduler must see.
#[derive(Debug, Clone)]
pub enum ClusterEvent {
    /// A node joined.
    NodeAdded(NodeInfo),
    /// A node's labels, taints, cordon or allocatable changed (its pods and GPU usage are kept).
    NodeUpdated(NodeInfo),
    /// A node left.
    NodeDeleted(String),
    /// A node's device inventory (ResourceSlice) was replaced.
    DevicesChanged {
        /// The node.
        node: String,
        /// Its GPUs now; usage is recomputed from the pods on the node.
        devices: Vec<GpuDevice>,
    },
    /// A pod was created (pending, or already bound when `node` is set).
    PodAdded(PodInfo),
    /// A pod changed (e.g. its binding was observed).
    PodUpdated(PodInfo),
    /// A pod was deleted (finished, evicted, or removed).
    PodDeleted(PodKey),
    /// A pod group was created or changed.
    PodGroupChanged(GangSpec),
    /// A pod group was deleted.
    PodGroupDeleted(PodKey),
    /// A queue was created or changed.
    QueueChanged(QueueInfo),
    /// A queue was deleted.
    QueueDeleted(String),
    /// A priority class was created or changed.
    PriorityClassChanged {
        /// Class name.
        name: String,
        /// Its value.
        value: i32,
    },
}

/// A set of event kinds, as a bit mask: what a plugin's rejection can be cured by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventMask(pub u16);

impl EventMask {
    /// A node was added.
    pub const NODE_ADDED: EventMask = EventMask(1);
    /// A node's labels, taints, cordon or allocatable changed.
    pub const NODE_UPDATED: EventMask = EventMask(1 << 1);
    /// A node's devices changed.
    pub const DEVICES_CHANGED: EventMask = EventMask(1 << 2);
    /// A pod was added (a gang member may have arrived).
    pub const POD_ADDED: EventMask = EventMask(1 << 3);
    /// A pod was deleted, freeing resources.
    pub const POD_DELETED: EventMask = EventMask(1 << 4);
    /// A pod group changed.
    pub const POD_GROUP_CHANGED: EventMask = EventMask(1 << 5);
    /// A queue or priority class changed.
    pub const POLICY_CHANGED: EventMask = EventMask(1 << 6);
    /// Every event.
    pub const ALL: EventMask = EventMask(u16::MAX);
    /// Events that free or add capacity.
    pub const CAPACITY: EventMask = EventMask(1 | 1 << 1 | 1 << 2 | 1 << 4);

    /// Both sets.
    pub const fn union(self, other: EventMask) -> EventMask {
        EventMask(self.0 | other.0)
    }

    /// Whether the sets share a kind.
    pub const fn intersects(self, other: EventMask) -> bool {
        self.0 & other.0 != 0
    }
}

impl ClusterEvent {
    /// The kind of this event.
    pub fn kind(&self) -> EventMask {
        match self {
            ClusterEvent::NodeAdded(_) => EventMask::NODE_ADDED,
            ClusterEvent::NodeUpdated(_) | ClusterEvent::NodeDeleted(_) => EventMask::NODE_UPDATED,
            ClusterEvent::DevicesChanged { .. } => EventMask::DEVICES_CHANGED,
            ClusterEvent::PodAdded(_) | ClusterEvent::PodUpdated(_) => EventMask::POD_ADDED,
            ClusterEvent::PodDeleted(_) => EventMask::POD_DELETED,
            ClusterEvent::PodGroupChanged(_) | ClusterEvent::PodGroupDeleted(_) => {
                EventMask::POD_GROUP_CHANGED
            }
            ClusterEvent::QueueChanged(_)
            | ClusterEvent::QueueDeleted(_)
            | ClusterEvent::PriorityClassChanged { .. } => EventMask::POLICY_CHANGED,
        }
    }
}
