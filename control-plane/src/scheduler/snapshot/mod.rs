//! The in-memory cluster snapshot: nodes, pods, gangs and devices, updated incrementally.
//!
//! One snapshot lives in the scheduler and is changed only by [`ClusterSnapshot::apply`]
//! (cluster events) and by the assume cache (Reserve/Unreserve). Plugins read it.

mod assumed;
mod event;
mod topology;

use std::collections::{HashMap, HashSet};

use thiserror::Error;

use super::model::{GangSpec, NodeInfo, PodInfo, PodKey, QueueInfo};
pub use assumed::AssumeError;
pub use event::{ClusterEvent, EventMask};
pub use topology::{DomainIndex, LEVELS, level_slot};

/// A snapshot update that made no sense.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// The event names a node the snapshot does not hold.
    #[error("node {0} not found in the scheduler's snapshot")]
    NodeNotFound(String),
    /// A node with this name is already present.
    #[error("node {0} already exists in the scheduler's snapshot")]
    NodeExists(String),
}

/// Membership of one pod group.
#[derive(Debug, Clone, Default)]
pub struct GroupInfo {
    /// The group's spec, once the PodGroup was seen.
    pub spec: Option<GangSpec>,
    /// Every known pod of the group.
    pub members: HashSet<PodKey>,
    /// Members assigned or assumed to a node.
    pub placed: HashSet<PodKey>,
}

/// The scheduler's view of the cluster.
#[derive(Debug, Default)]
pub struct ClusterSnapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<PodKey, PodInfo>,
    groups: HashMap<PodKey, GroupInfo>,
    queues: HashMap<String, QueueInfo>,
    priority_classes: HashMap<String, i32>,
    assumed: HashMap<PodKey, bool>,
    topology: DomainIndex,
}

impl ClusterSnapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// All nodes, in a stable order between events.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The position of node `name` in [`Self::nodes`].
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Node `name`.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.node_index(name).map(|i| &self.nodes[i])
    }

    /// Pod `key` (pending, assumed or assigned).
    pub fn pod(&self, key: &str) -> Option<&PodInfo> {
        self.pods.get(key)
    }

    /// Every known pod.
    pub fn pods(&self) -> impl Iterator<Item = &PodInfo> {
        self.pods.values()
    }

    /// Pod group `key`.
    pub fn group(&self, key: &str) -> Option<&GroupInfo> {
        self.groups.get(key)
    }

    /// Value of priority class `name`.
    pub fn priority_class(&self, name: &str) -> Option<i32> {
        self.priority_classes.get(name).copied()
    }

    /// Priority of queue `name`.
    pub fn queue_priority(&self, name: &str) -> Option<i32> {
        self.queues.get(name).map(|q| q.priority)
    }

    /// Queue `name`.
    pub fn queue(&self, name: &str) -> Option<&QueueInfo> {
        self.queues.get(name)
    }

    /// Every known queue.
    pub fn queues(&self) -> impl Iterator<Item = &QueueInfo> {
        self.queues.values()
    }

    /// The queue `pod` is admitted through: its gang's (`PodGroup.spec.queue`), else its
    /// own label; `None` when the pod names no queue the snapshot holds.
    pub fn queue_of(&self, pod: &PodInfo) -> Option<&QueueInfo> {
        let from_group = pod
            .group
            .as_deref()
            .and_then(|g| self.groups.get(g))
            .and_then(|g| g.spec.as_ref())
            .and_then(|s| s.queue.as_deref());
        from_group
            .or(pod.queue.as_deref())
            .and_then(|q| self.queues.get(q))
    }

    /// The network-topology domains of the nodes.
    pub fn topology(&self) -> &DomainIndex {
        &self.topology
    }

    /// Applies one cluster event.
    pub fn apply(&mut self, event: ClusterEvent) -> Result<(), SnapshotError> {
        match event {
            ClusterEvent::NodeAdded(node) => self.add_node(node)?,
            ClusterEvent::NodeUpdated(node) => self.update_node(node)?,
            ClusterEvent::NodeDeleted(name) => {
                let i = self
                    .index
                    .remove(&name)
                    .ok_or(SnapshotError::NodeNotFound(name))?;
                self.nodes.swap_remove(i);
                if i < self.nodes.len() {
                    self.index.insert(self.nodes[i].name.clone(), i);
                }
                self.topology.rebuild(&mut self.nodes);
            }
            ClusterEvent::DevicesChanged { node, devices } => {
                let i = self.existing(&node)?;
                self.nodes[i].gpus = devices;
                self.reaccount(i);
            }
            ClusterEvent::PodAdded(pod) | ClusterEvent::PodUpdated(pod) => self.upsert_pod(pod),
            ClusterEvent::PodDeleted(key) => {
                self.assumed.remove(&key);
                self.delete_pod(&key);
            }
            ClusterEvent::PodGroupChanged(spec) => {
                let key = spec.key.clone();
                self.groups.entry(key).or_default().spec = Some(spec);
            }
            ClusterEvent::PodGroupDeleted(key) => {
                if let Some(g) = self.groups.get_mut(&key) {
                    g.spec = None;
                }
            }
            ClusterEvent::QueueChanged(queue) => {
                self.queues.insert(queue.name.clone(), queue);
            }
            ClusterEvent::QueueDeleted(name) => {
                self.queues.remove(&name);
            }
            ClusterEvent::PriorityClassChanged { name, value } => {
                self.priority_classes.insert(name, value);
            }
        }
        Ok(())
    }

    fn existing(&self, name: &str) -> Result<usize, SnapshotError> {
        self.node_index(name)
            .ok_or_else(|| SnapshotError::NodeNotFound(name.to_string()))
    }

    fn add_node(&mut self, mut node: NodeInfo) -> Result<(), SnapshotError> {
        if self.index.contains_key(&node.name) {
            return Err(SnapshotError::NodeExists(node.name));
        }
        node.pods.clear();
        node.requested = Default::default();
        let i = self.nodes.len();
        self.index.insert(node.name.clone(), i);
        self.topology.add(&mut node, i);
        self.nodes.push(node);
        self.reaccount(i);
        Ok(())
    }

    fn update_node(&mut self, node: NodeInfo) -> Result<(), SnapshotError> {
        let i = self.existing(&node.name)?;
        let cur = &mut self.nodes[i];
        cur.labels = node.labels;
        cur.taints = node.taints;
        cur.unschedulable = node.unschedulable;
        cur.allocatable = node.allocatable;
        cur.refresh();
        self.topology.rebuild(&mut self.nodes);
        Ok(())
    }

    /// Recomputes node `i`'s requests and device usage from the pods that name it.
    fn reaccount(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.pods.clear();
        node.requested = Default::default();
        for d in &mut node.gpus {
            d.used_milli = 0;
        }
        for pod in self.pods.values() {
            if pod.node.as_deref() == Some(node.name.as_str()) {
                node.add_pod(&pod.key, &pod.requests, &pod.devices);
            }
        }
        node.refresh();
    }

    fn upsert_pod(&mut self, mut pod: PodInfo) {
        if let Some(old) = self.pods.get(&pod.key) {
            if pod.node.is_none() && self.assumed.contains_key(&pod.key) {
                // The watch has not seen our binding yet: keep the assumed placement.
                pod.node = old.node.clone();
                pod.devices = old.devices.clone();
            } else if old.node.is_some() && pod.node.is_some() {
                self.assumed.remove(&pod.key);
            }
        }
        self.delete_pod(&pod.key.clone());
        if let Some(group) = &pod.group {
            let g = self.groups.entry(group.clone()).or_default();
            g.members.insert(pod.key.clone());
            if pod.node.is_some() {
                g.placed.insert(pod.key.clone());
            }
        }
        if let Some(i) = pod.node.as_deref().and_then(|n| self.node_index(n)) {
            self.nodes[i].add_pod(&pod.key, &pod.requests, &pod.devices);
        }
        self.pods.insert(pod.key.clone(), pod);
    }

    fn delete_pod(&mut self, key: &PodKey) {
        let Some(pod) = self.pods.remove(key) else {
            return;
        };
        if let Some(i) = pod.node.as_deref().and_then(|n| self.node_index(n)) {
            self.nodes[i].remove_pod(&pod.key, &pod.requests, &pod.devices);
        }
        if let Some(g) = pod.group.as_ref().and_then(|g| self.groups.get_mut(g)) {
            g.members.remove(key);
            g.placed.remove(key);
        }
    }
}
