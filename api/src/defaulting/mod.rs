//! Defaulting: the values the API server fills in before validating an object (and a
//! Secret's `stringData` folded into `data`).
//!
//! Defaulting is idempotent: applying it twice changes nothing the second time. It only
//! fills fields that are unset; it never overrides what the user wrote.

mod pod;
mod podgroup;
mod pytorchjob;
mod queue;
mod secret;
mod trainingjob;

pub use pod::{
    DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS, default_container, default_pod, default_pod_spec,
};
pub use podgroup::{default_pod_group, pod_group_for};
pub use pytorchjob::default_pytorch_job;
pub use queue::default_queue;
pub use secret::fold_string_data;
pub use trainingjob::{DEFAULT_BACKOFF_LIMIT, default_training_job};

use crate::Object;

/// Fills the defaults of `object`'s kind; kinds without defaults are left as they are.
pub fn apply_defaults(object: &mut Object) {
    match object {
        Object::Pod(pod) => default_pod(pod),
        Object::TrainingJob(job) => default_training_job(job),
        Object::PodGroup(group) => default_pod_group(group),
        Object::Queue(queue) => default_queue(queue),
        Object::PyTorchJob(job) => default_pytorch_job(job),
        Object::Secret(secret) => fold_string_data(secret),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
