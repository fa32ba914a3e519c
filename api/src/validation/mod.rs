//! Validation: every problem with an object, each with its field path.
//!
//! Validators never stop at the first problem: they return a `Vec<FieldError>`
//! (empty when the object is valid), formatted like Kubernetes' `field.ErrorList`:
//! `spec.replicaGroups[1].replicas: must be greater than or equal to 1`.
//!
//! Coverage: metadata for every kind; full specs for `Pod`, `TrainingJob`, `PodGroup`,
//! `Queue`, `PyTorchJob` and `PersistentVolumeClaim`; the pod templates of `Deployment`, `ReplicaSet`, `DaemonSet`, `Job` and
//! `CronJob`; the data keys of `Secret` and `ConfigMap`. The other Kubernetes kinds (Service, Node, ...) and the rest of
//! the workloads' specs are validated on their metadata only for now. Enumerated fields of coxswain's kinds (topology level and
//! mode, restart and success policy types, pod group phase) are Rust enums, so a bad value
//! is rejected when decoding, with its field path.

mod field;
mod metadata;
mod pod;
mod podgroup;
mod pytorchjob;
mod queue;
mod resources;
mod secret;
mod training_resources;
mod trainingjob;
mod volumes;
mod workloads;

pub use field::{FieldError, FieldErrorType, FieldPath, ValidationError};
pub use metadata::{MAX_ANNOTATIONS_BYTES, validate_object_meta};
pub use pod::{PULL_POLICIES, RESTART_POLICIES, token_expiration, validate_pod, validate_pod_spec};
pub use podgroup::validate_pod_group;
pub use pytorchjob::validate_pytorch_job;
pub use queue::validate_queue;
pub use secret::{MAX_SECRET_BYTES, validate_config_map, validate_secret};
pub use trainingjob::validate_training_job;
pub use volumes::{ACCESS_MODES, VOLUME_MODES, validate_persistent_volume_claim};
pub use workloads::validate_workload_template;

use crate::Object;

/// Every problem with `object`: its `apiVersion`/`kind` fields, metadata and spec.
pub fn validate(object: &Object) -> Vec<FieldError> {
    let info = object.kind_info();
    let mut errors = Vec::new();
    let type_fields = match object {
        Object::TrainingJob(o) => Some((&o.api_version, &o.kind)),
        Object::PodGroup(o) => Some((&o.api_version, &o.kind)),
        Object::Queue(o) => Some((&o.api_version, &o.kind)),
        Object::PyTorchJob(o) => Some((&o.api_version, &o.kind)),
        _ => None,
    };
    if let Some((api_version, kind)) = type_fields {
        if api_version != info.api_version {
            errors.push(FieldError::invalid(
                &FieldPath::new("apiVersion"),
                format!("must be \"{}\"", info.api_version),
            ));
        }
        if kind != info.kind {
            errors.push(FieldError::invalid(
                &FieldPath::new("kind"),
                format!("must be \"{}\"", info.kind),
            ));
        }
    }
    errors.extend(validate_object_meta(object.metadata(), info));
    match object {
        Object::Pod(pod) => errors.extend(validate_pod(pod)),
        Object::TrainingJob(job) => errors.extend(validate_training_job(job)),
        Object::PodGroup(group) => errors.extend(validate_pod_group(group)),
        Object::Queue(queue) => errors.extend(validate_queue(queue)),
        Object::PyTorchJob(job) => errors.extend(validate_pytorch_job(job)),
        Object::PersistentVolumeClaim(claim) => {
            errors.extend(validate_persistent_volume_claim(claim))
        }
        Object::Secret(secret) => errors.extend(validate_secret(secret)),
        Object::ConfigMap(config_map) => errors.extend(validate_config_map(config_map)),
        other => errors.extend(validate_workload_template(other)),
    }
    errors
}

#[cfg(test)]
mod tests;
