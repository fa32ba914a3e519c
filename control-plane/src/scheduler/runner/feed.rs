//! What the watches report, and how it becomes [`ClusterEvent`]s on the scheduling thread.
//!
//! A node's GPUs live in ResourceSlices that may arrive before or after the Node: the feed
//! keeps every slice's devices and hands them to the node when it is added, so the
//! snapshot never sees devices for a node it does not hold.

use std::collections::{BTreeMap, HashSet};

use super::super::model::{GangSpec, GpuDevice, NodeInfo, PodInfo, PodKey, QueueInfo};
use super::super::{ClusterEvent, Scheduler};

/// One change observed through the API.
#[derive(Debug, Clone)]
pub enum Input {
    /// A node was created or changed.
    NodeApplied(NodeInfo),
    /// A node is gone.
    NodeDeleted(String),
    /// A GPU slice was created or changed.
    SliceApplied {
        /// The slice's name.
        name: String,
        /// `spec.nodeName`.
        node: String,
        /// Its GPUs.
        devices: Vec<GpuDevice>,
    },
    /// A GPU slice is gone.
    SliceDeleted(String),
    /// A pod to schedule or one holding capacity was created or changed.
    PodApplied(PodInfo),
    /// A pod no longer holds capacity nor waits (deleted, finished, or not ours).
    PodDeleted(PodKey),
    /// A pod group was created or changed.
    GroupApplied(GangSpec),
    /// A pod group is gone.
    GroupDeleted(PodKey),
    /// A queue was created or changed.
    QueueApplied(QueueInfo),
    /// A queue is gone.
    QueueDeleted(String),
}

/// Node and slice bookkeeping between the watches and the snapshot.
#[derive(Debug, Default)]
pub(super) struct Feed {
    nodes: HashSet<String>,
    /// By slice name: its node and devices (sorted by name, so a node's devices have a
    /// stable order across slices).
    slices: BTreeMap<String, (String, Vec<GpuDevice>)>,
}

impl Feed {
    fn devices_of(&self, node: &str) -> Vec<GpuDevice> {
        self.slices
            .values()
            .filter(|(n, _)| n == node)
            .flat_map(|(_, d)| d.iter().cloned())
            .collect()
    }

    /// The cluster events for `input`.
    pub(super) fn events(&mut self, input: Input) -> Vec<ClusterEvent> {
        match input {
            Input::NodeApplied(mut node) => {
                if self.nodes.contains(&node.name) {
                    vec![ClusterEvent::NodeUpdated(node)]
                } else {
                    self.nodes.insert(node.name.clone());
                    node.gpus = self.devices_of(&node.name);
                    node.refresh();
                    vec![ClusterEvent::NodeAdded(node)]
                }
            }
            Input::NodeDeleted(name) => {
                if self.nodes.remove(&name) {
                    vec![ClusterEvent::NodeDeleted(name)]
                } else {
                    Vec::new()
                }
            }
            Input::SliceApplied {
                name,
                node,
                devices,
            } => {
                let old = self.slices.insert(name, (node.clone(), devices));
                let mut touched = vec![node];
                if let Some((old_node, _)) = old
                    && old_node != touched[0]
                {
                    touched.push(old_node);
                }
                self.devices_changed(touched)
            }
            Input::SliceDeleted(name) => match self.slices.remove(&name) {
                Some((node, _)) => self.devices_changed(vec![node]),
                None => Vec::new(),
            },
            Input::PodApplied(pod) => vec![ClusterEvent::PodAdded(pod)],
            Input::PodDeleted(key) => vec![ClusterEvent::PodDeleted(key)],
            Input::GroupApplied(spec) => vec![ClusterEvent::PodGroupChanged(spec)],
            Input::GroupDeleted(key) => vec![ClusterEvent::PodGroupDeleted(key)],
            Input::QueueApplied(queue) => vec![ClusterEvent::QueueChanged(queue)],
            Input::QueueDeleted(name) => vec![ClusterEvent::QueueDeleted(name)],
        }
    }

    fn devices_changed(&self, nodes: Vec<String>) -> Vec<ClusterEvent> {
        nodes
            .into_iter()
            .filter(|n| self.nodes.contains(n))
            .map(|node| ClusterEvent::DevicesChanged {
                devices: self.devices_of(&node),
                node,
            })
            .collect()
    }

    /// Applies `input` to the scheduler.
    pub(super) fn apply(&mut self, scheduler: &mut Scheduler, input: Input) {
        for event in self.events(input) {
            if let Err(e) = scheduler.handle(event) {
                tracing::warn!(error = %e, "scheduler snapshot rejected a watch event");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::Resources;

    fn gpus(prefix: &str) -> Vec<GpuDevice> {
        (0..2)
            .map(|i| GpuDevice::new(format!("{prefix}-{i}"), "H100", 0, 0))
            .collect()
    }

    #[test]
    fn slices_before_the_node_are_handed_to_it() {
        let mut feed = Feed::default();
        let early = feed.events(Input::SliceApplied {
            name: "n1-gpu".into(),
            node: "n1".into(),
            devices: gpus("GPU-a"),
        });
        assert!(early.is_empty(), "no DevicesChanged for an unknown node");
        let node = NodeInfo::new("n1", Resources::new(1000, 1 << 30, 10), Vec::new());
        match feed.events(Input::NodeApplied(node.clone())).as_slice() {
            [ClusterEvent::NodeAdded(n)] => assert_eq!(n.gpus.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            feed.events(Input::NodeApplied(node)).as_slice(),
            [ClusterEvent::NodeUpdated(_)]
        ));
        match feed.events(Input::SliceDeleted("n1-gpu".into())).as_slice() {
            [ClusterEvent::DevicesChanged { node, devices }] => {
                assert_eq!(node, "n1");
                assert!(devices.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}
