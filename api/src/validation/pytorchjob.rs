//! Validation of `PyTorchJob` specs, with the rules of Kubeflow's training operator
//! (`pytorch_validation.go`) plus the bounds coxswain checks for its own jobs.

use super::field::{FieldError, FieldPath, push_invalid};
use super::metadata::validate_labels;
use super::pod::validate_pod_spec;
use super::training_resources::validate_template_resource_names;
use crate::kubeflow::{
    DEFAULT_CONTAINER_NAME, MASTER, PyTorchJob, REPLICA_TYPES, ReplicaSpec, RunPolicy,
};
use crate::names::{self, DNS1123_LABEL_MAX_LENGTH};

/// The rendezvous backends torchrun knows.
const RDZV_BACKENDS: [&str; 3] = ["c10d", "etcd", "etcd-v2"];
/// The words `spec.nprocPerNode` may be besides a number.
const NPROC_WORDS: [&str; 3] = ["auto", "cpu", "gpu"];

/// Every problem with a `PyTorchJob`'s spec (metadata is checked by [`super::validate`]).
pub fn validate_pytorch_job(job: &PyTorchJob) -> Vec<FieldError> {
    let spec = &job.spec;
    let path = FieldPath::new("spec");
    let specs_path = path.child("pytorchReplicaSpecs");
    let mut errors = Vec::new();
    if spec.pytorch_replica_specs.is_empty() {
        errors.push(FieldError::required(
            &specs_path,
            "a Master or Worker replica spec is required",
        ));
    }
    let job_name = job.metadata.name.as_deref().unwrap_or_default();
    for (replica_type, replica) in &spec.pytorch_replica_specs {
        let replica_path = specs_path.child(replica_type);
        if !REPLICA_TYPES.contains(&replica_type.as_str()) {
            errors.push(FieldError::not_supported(
                &replica_path,
                replica_type,
                &REPLICA_TYPES,
            ));
            continue;
        }
        validate_replica(job_name, replica_type, replica, &replica_path, &mut errors);
    }
    if !spec.pytorch_replica_specs.is_empty() && job.total_replicas() < 1 {
        errors.push(FieldError::invalid(
            &specs_path,
            "the replicas of all types must add up to at least 1",
        ));
    }
    if let Some(policy) = &spec.run_policy {
        validate_run_policy(job, policy, &path.child("runPolicy"), &mut errors);
    }
    let nproc_path = path.child("nprocPerNode");
    if let Some(nproc) = &spec.nproc_per_node
        && !NPROC_WORDS.contains(&nproc.as_str())
        && !nproc.parse::<u32>().is_ok_and(|n| n >= 1)
    {
        errors.push(FieldError::invalid(
            &nproc_path,
            format!("\"{nproc}\": must be auto, cpu, gpu or a whole number of at least 1"),
        ));
    }
    if let Some(elastic) = &spec.elastic_policy {
        let elastic_path = path.child("elasticPolicy");
        if spec.nproc_per_node.is_some() && elastic.n_proc_per_node.is_some() {
            errors.push(FieldError::forbidden(
                &elastic_path.child("nProcPerNode"),
                "is deprecated and conflicts with spec.nprocPerNode: set only spec.nprocPerNode",
            ));
        }
        if let (Some(min), Some(max)) = (elastic.min_replicas, elastic.max_replicas)
            && min > max
        {
            errors.push(FieldError::invalid(
                &elastic_path.child("minReplicas"),
                format!("must not be greater than maxReplicas ({max})"),
            ));
        }
        if let Some(backend) = &elastic.rdzv_backend
            && !RDZV_BACKENDS.contains(&backend.as_str())
        {
            errors.push(FieldError::not_supported(
                &elastic_path.child("rdzvBackend"),
                backend,
                &RDZV_BACKENDS,
            ));
        }
    }
    errors
}

fn validate_replica(
    job_name: &str,
    replica_type: &str,
    replica: &ReplicaSpec,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) {
    let replicas = replica.replicas.unwrap_or(1);
    if replica_type == MASTER && replicas != 1 {
        errors.push(FieldError::invalid(&path.child("replicas"), "must be 1"));
    } else if replicas < 0 {
        errors.push(FieldError::invalid(
            &path.child("replicas"),
            "must be greater than or equal to 0",
        ));
    }
    let last_pod = format!(
        "{job_name}-{}-{}",
        replica_type.to_ascii_lowercase(),
        replicas.max(1) - 1
    );
    if last_pod.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(FieldError::invalid(
            path,
            format!(
                "pod names like {last_pod:?} would be {} characters, more than \
                 {DNS1123_LABEL_MAX_LENGTH}: shorten the job name",
                last_pod.len()
            ),
        ));
    }
    let template_path = path.child("template");
    if let Some(meta) = &replica.template.metadata {
        errors.extend(validate_labels(meta, &template_path.child("metadata")));
    }
    let spec_path = template_path.child("spec");
    let Some(spec) = &replica.template.spec else {
        errors.push(FieldError::required(
            &spec_path.child("containers"),
            format!("a container named \"{DEFAULT_CONTAINER_NAME}\" is required"),
        ));
        return;
    };
    errors.extend(validate_pod_spec(spec, &spec_path));
    errors.extend(validate_template_resource_names(spec, &spec_path));
    if !spec.containers.is_empty()
        && !spec
            .containers
            .iter()
            .any(|c| c.name == DEFAULT_CONTAINER_NAME)
    {
        errors.push(FieldError::required(
            &spec_path.child("containers"),
            format!("a container named \"{DEFAULT_CONTAINER_NAME}\" is required"),
        ));
    }
}

fn validate_run_policy(
    job: &PyTorchJob,
    policy: &RunPolicy,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) {
    let non_negative = [
        ("backoffLimit", policy.backoff_limit.map(i64::from)),
        (
            "ttlSecondsAfterFinished",
            policy.ttl_seconds_after_finished.map(i64::from),
        ),
    ];
    for (field, value) in non_negative {
        if value.is_some_and(|v| v < 0) {
            errors.push(FieldError::invalid(
                &path.child(field),
                "must be greater than or equal to 0",
            ));
        }
    }
    if policy.active_deadline_seconds.is_some_and(|v| v <= 0) {
        errors.push(FieldError::invalid(
            &path.child("activeDeadlineSeconds"),
            "must be greater than 0",
        ));
    }
    let Some(scheduling) = &policy.scheduling_policy else {
        return;
    };
    let path = path.child("schedulingPolicy");
    if let Some(min) = scheduling.min_available
        && (min < 1 || i64::from(min) > job.total_replicas())
    {
        errors.push(FieldError::invalid(
            &path.child("minAvailable"),
            format!(
                "must be between 1 and the job's {} replicas",
                job.total_replicas()
            ),
        ));
    }
    if scheduling.schedule_timeout_seconds.is_some_and(|v| v <= 0) {
        errors.push(FieldError::invalid(
            &path.child("scheduleTimeoutSeconds"),
            "must be greater than 0",
        ));
    }
    for (field, value) in [
        ("queue", &scheduling.queue),
        ("priorityClass", &scheduling.priority_class),
    ] {
        if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
            push_invalid(
                errors,
                &path.child(field),
                value,
                names::dns1123_subdomain(value),
            );
        }
    }
}
