//! Bind: writing a decision back. A [`Binder`] sets the pod's node and records the
//! allocated GPU IDs in the [`GPU_DEVICES_ANNOTATION`]; it also evicts preemption victims.
//!
//! The API binder ([`super::runner::ApiBinder`]) writes `spec.nodeName` and the annotation in one
//! compare-and-swap update at the pod's `resourceVersion`; a conflict comes back as
//! [`BindError::Conflict`] and the scheduler re-queues the pod with back-off.

mod annotation;
mod in_memory;

use thiserror::Error;

pub use annotation::{GPU_DEVICES_ANNOTATION, format_devices, parse_devices};
pub use in_memory::InMemoryBinder;

use super::model::{DeviceAlloc, PodKey};

/// A scheduling decision to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The pod.
    pub pod: PodKey,
    /// Its node.
    pub node: String,
    /// The exact GPU shares it gets (empty for pods without GPUs).
    pub devices: Vec<DeviceAlloc>,
}

/// Why a binding or eviction was not written.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BindError {
    /// The pod changed since the scheduler saw it (resourceVersion mismatch).
    #[error("pod {0} was modified concurrently; it will be retried")]
    Conflict(String),
    /// The pod is gone.
    #[error("pod {0} not found")]
    NotFound(String),
    /// The store failed.
    #[error("store error while binding pod {pod}: {message}")]
    Store {
        /// The pod.
        pod: String,
        /// What the store said.
        message: String,
    },
    /// An annotation value could not be parsed.
    #[error("annotation {GPU_DEVICES_ANNOTATION}: {0}")]
    Annotation(String),
}

/// Writes bindings and evictions (the Bind extension point).
pub trait Binder: Send + Sync {
    /// Binds the pod: node name plus device annotation, with compare-and-swap.
    fn bind(&self, binding: &Binding) -> Result<(), BindError>;

    /// Evicts a preemption victim (deletes the pod gracefully).
    fn evict(&self, pod: &PodKey, reason: &str) -> Result<(), BindError>;
}
