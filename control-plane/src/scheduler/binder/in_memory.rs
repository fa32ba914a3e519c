//! A binder that keeps bindings in memory: for tests and the simulator.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::super::model::PodKey;
use super::{BindError, Binder, Binding};

#[derive(Debug, Default)]
struct State {
    bound: HashMap<PodKey, Binding>,
    evicted: Vec<PodKey>,
    conflicts: HashSet<PodKey>,
}

/// Records bindings and evictions; can be told to answer a conflict once per pod.
#[derive(Debug, Default)]
pub struct InMemoryBinder {
    state: Mutex<State>,
}

impl InMemoryBinder {
    /// An empty binder.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next bind of `pod` fails with a conflict.
    pub fn inject_conflict(&self, pod: &str) {
        self.lock().conflicts.insert(pod.into());
    }

    /// Every binding written and not evicted since.
    pub fn bindings(&self) -> HashMap<PodKey, Binding> {
        self.lock().bound.clone()
    }

    /// The binding of `pod`, if bound.
    pub fn binding(&self, pod: &str) -> Option<Binding> {
        self.lock().bound.get(pod).cloned()
    }

    /// Drops the binding of a pod deleted from the cluster (the simulator's workload
    /// finishing a pod).
    pub fn remove(&self, pod: &str) {
        self.lock().bound.remove(pod);
    }

    /// Pods evicted since the last call (the caller deletes them from the cluster).
    pub fn take_evicted(&self) -> Vec<PodKey> {
        std::mem::take(&mut self.lock().evicted)
    }
}

impl Binder for InMemoryBinder {
    fn bind(&self, binding: &Binding) -> Result<(), BindError> {
        let mut s = self.lock();
        if s.conflicts.remove(&binding.pod) {
            return Err(BindError::Conflict(binding.pod.to_string()));
        }
        s.bound.insert(binding.pod.clone(), binding.clone());
        Ok(())
    }

    fn evict(&self, pod: &PodKey, _reason: &str) -> Result<(), BindError> {
        let mut s = self.lock();
        s.bound.remove(pod);
        s.evicted.push(pod.clone());
        Ok(())
    }
}
