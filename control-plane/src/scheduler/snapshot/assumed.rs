//! The assumed-pod cache: a pod is accounted to its node at Reserve ("assumed"), before
//! the binding is written, so the next cycle sees the capacity as taken. Binding
//! success marks it bound; the watch confirming the binding drops the mark; failure
//! forgets it and releases the capacity.

use thiserror::Error;

use super::super::model::DeviceAlloc;
use super::ClusterSnapshot;

/// A pod could not be assumed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AssumeError {
    /// The pod is not in the snapshot.
    #[error("pod {0} is not in the scheduler's snapshot")]
    PodNotFound(String),
    /// The pod already has a node.
    #[error("pod {pod} is already on node {node}")]
    AlreadyPlaced {
        /// The pod.
        pod: String,
        /// Its node.
        node: String,
    },
    /// The node is gone.
    #[error("node {0} not found in the scheduler's snapshot")]
    NodeNotFound(String),
}

impl ClusterSnapshot {
    /// Accounts pod `key` to `node` with `devices` before its binding is written.
    pub fn assume(
        &mut self,
        key: &str,
        node: &str,
        devices: Vec<DeviceAlloc>,
    ) -> Result<(), AssumeError> {
        let i = self
            .node_index(node)
            .ok_or_else(|| AssumeError::NodeNotFound(node.to_string()))?;
        let pod = self
            .pods
            .get_mut(key)
            .ok_or_else(|| AssumeError::PodNotFound(key.to_string()))?;
        if let Some(n) = &pod.node {
            return Err(AssumeError::AlreadyPlaced {
                pod: key.to_string(),
                node: n.clone(),
            });
        }
        pod.node = Some(node.to_string());
        pod.devices = devices;
        self.nodes[i].add_pod(&pod.key, &pod.requests, &pod.devices);
        if let Some(g) = pod.group.as_ref().and_then(|g| self.groups.get_mut(g)) {
            g.placed.insert(pod.key.clone());
        }
        self.assumed.insert(pod.key.clone(), false);
        Ok(())
    }

    /// Marks an assumed pod's binding as written; the watch will confirm it.
    pub fn finish_binding(&mut self, key: &str) {
        if let Some(done) = self.assumed.get_mut(key) {
            *done = true;
        }
    }

    /// Releases an assumed pod's capacity (Unreserve, failed bind). Idempotent: a pod
    /// that is not assumed (never was, or already forgotten or confirmed) is left alone.
    pub fn forget(&mut self, key: &str) {
        if self.assumed.remove(key).is_none() {
            return;
        }
        let Some(pod) = self.pods.get_mut(key) else {
            return;
        };
        let node = pod.node.take();
        let devices = std::mem::take(&mut pod.devices);
        if let Some(i) = node.as_deref().and_then(|n| self.index.get(n).copied()) {
            self.nodes[i].remove_pod(&pod.key, &pod.requests, &devices);
        }
        if let Some(g) = pod.group.as_ref().and_then(|g| self.groups.get_mut(g)) {
            g.placed.remove(key);
        }
    }

    /// Whether pod `key` is assumed (placed by us, not yet confirmed by the watch).
    pub fn is_assumed(&self, key: &str) -> bool {
        self.assumed.contains_key(key)
    }

    /// Whether pod `key` is assumed and its binding was written.
    pub fn is_binding_finished(&self, key: &str) -> bool {
        self.assumed.get(key).copied().unwrap_or(false)
    }
}
