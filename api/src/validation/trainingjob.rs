//! Validation of `TrainingJob` specs.

use std::collections::HashSet;

use super::field::{FieldError, FieldPath, push_invalid};
use super::metadata::validate_labels;
use super::pod::validate_pod_spec;
use super::training_resources::validate_template_resource_names;
use crate::coxswain::{ReplicaGroup, RunPolicy, SuccessPolicyType, TrainingJob};
use crate::names::{self, DNS1123_LABEL_MAX_LENGTH};
use crate::quantity::ParsedQuantity;
use crate::resources::NVIDIA_GPU;

/// Every problem with a training job's spec (metadata is checked by [`super::validate`]).
pub fn validate_training_job(job: &TrainingJob) -> Vec<FieldError> {
    let spec = &job.spec;
    let path = FieldPath::new("spec");
    let groups_path = path.child("replicaGroups");
    let mut errors = Vec::new();
    if spec.replica_groups.is_empty() {
        errors.push(FieldError::required(
            &groups_path,
            "at least one replica group is required",
        ));
    }
    let job_name = job.metadata.name.as_deref().unwrap_or_default();
    // The job's headless Service, and so its pods' subdomain, is named after it: a
    // Service name is a DNS-1035 label. (Other name rules are checked with the metadata.)
    if !job_name.is_empty()
        && names::dns1123_label(job_name).is_empty()
        && !names::dns1035_label(job_name).is_empty()
    {
        errors.push(FieldError::invalid(
            &FieldPath::new("metadata").child("name"),
            format!(
                "{job_name:?}: must start with a letter, because the job's headless \
                 Service (its pods' DNS subdomain) is named after it (a DNS-1035 label)"
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (index, group) in spec.replica_groups.iter().enumerate() {
        let group_path = groups_path.index(index);
        validate_group(job_name, group, &group_path, &mut errors);
        if !group.name.is_empty() && !seen.insert(group.name.as_str()) {
            errors.push(FieldError::duplicate(
                &group_path.child("name"),
                &group.name,
            ));
        }
    }
    for (field, value) in [
        ("queue", &spec.queue),
        ("priorityClassName", &spec.priority_class_name),
    ] {
        if let Some(value) = value {
            push_invalid(
                &mut errors,
                &path.child(field),
                value,
                names::dns1123_subdomain(value),
            );
        }
    }
    if let Some(policy) = &spec.run_policy {
        validate_run_policy(policy, &path.child("runPolicy"), &mut errors);
    }
    if let Some(policy) = &spec.success_policy {
        let group_path = path.child("successPolicy").child("group");
        match (policy.type_, policy.group.as_deref()) {
            (SuccessPolicyType::Group, None) => errors.push(FieldError::required(
                &group_path,
                "the group whose pods must succeed is required for type Group",
            )),
            (SuccessPolicyType::Group, Some(group)) if !seen.contains(group) => {
                errors.push(FieldError::not_found(
                    &group_path,
                    format!("\"{group}\": no replica group of this name"),
                ));
            }
            (SuccessPolicyType::AllWorkers, Some(_)) => errors.push(FieldError::forbidden(
                &group_path,
                "may only be set for type Group",
            )),
            _ => {}
        }
    }
    if let Some(volume) = &spec.checkpoint_volume {
        for (index, group) in spec.replica_groups.iter().enumerate() {
            let declared = group
                .template
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref());
            if !declared.is_some_and(|v| v.iter().any(|v| &v.name == volume)) {
                errors.push(FieldError::not_found(
                    &path.child("checkpointVolume"),
                    format!(
                        "\"{volume}\": replica group {:?} (spec.replicaGroups[{index}]) \
                         has no volume of this name in its template",
                        group.name
                    ),
                ));
            }
        }
    }
    validate_gang_fields(job, &path, &mut errors);
    errors
}

/// `minMember`, `masterPort` and `checkpointPath`.
fn validate_gang_fields(job: &TrainingJob, path: &FieldPath, errors: &mut Vec<FieldError>) {
    let spec = &job.spec;
    if let Some(min) = spec.min_member {
        let total = job.total_replicas();
        if min < 1 {
            errors.push(FieldError::invalid(
                &path.child("minMember"),
                "must be greater than or equal to 1",
            ));
        } else if i64::from(min) > total && total > 0 {
            errors.push(FieldError::invalid(
                &path.child("minMember"),
                format!("must be at most the job's total replicas ({total})"),
            ));
        }
    }
    if let Some(port) = spec.master_port
        && !(1..=65535).contains(&port)
    {
        errors.push(FieldError::invalid(
            &path.child("masterPort"),
            "must be between 1 and 65535, inclusive",
        ));
    }
    if let Some(dir) = &spec.checkpoint_path {
        let dir_path = path.child("checkpointPath");
        if spec.checkpoint_volume.is_none() {
            errors.push(FieldError::forbidden(
                &dir_path,
                "may only be set together with spec.checkpointVolume",
            ));
        }
        if !dir.starts_with('/') || dir.split('/').any(|part| part == "..") {
            errors.push(FieldError::invalid(
                &dir_path,
                format!("{dir:?}: must be an absolute path without \"..\""),
            ));
        }
    }
}

fn validate_group(
    job_name: &str,
    group: &ReplicaGroup,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) {
    let name_path = path.child("name");
    if group.name.is_empty() {
        errors.push(FieldError::required(
            &name_path,
            "a replica group needs a name",
        ));
    } else {
        push_invalid(
            errors,
            &name_path,
            &group.name,
            names::dns1123_label(&group.name),
        );
        let last_pod = format!("{job_name}-{}-{}", group.name, group.replicas.max(1) - 1);
        if last_pod.len() > DNS1123_LABEL_MAX_LENGTH {
            errors.push(FieldError::invalid(
                &name_path,
                format!(
                    "pod names like {last_pod:?} would be {} characters, more than \
                     {DNS1123_LABEL_MAX_LENGTH}: shorten the job or group name",
                    last_pod.len()
                ),
            ));
        }
    }
    if group.replicas < 1 {
        errors.push(FieldError::invalid(
            &path.child("replicas"),
            "must be greater than or equal to 1",
        ));
    }
    let template_path = path.child("template");
    errors.extend(validate_labels(
        &group.template.metadata.clone().unwrap_or_default(),
        &template_path.child("metadata"),
    ));
    let Some(spec) = &group.template.spec else {
        errors.push(FieldError::required(
            &template_path.child("spec"),
            "a pod template needs a spec",
        ));
        return;
    };
    errors.extend(validate_pod_spec(spec, &template_path.child("spec")));
    errors.extend(validate_template_resource_names(
        spec,
        &template_path.child("spec"),
    ));
    if let Some(gpus) = group.gpus_per_replica {
        let gpus_path = path.child("gpusPerReplica");
        if gpus < 0 {
            errors.push(FieldError::invalid(
                &gpus_path,
                "must be greater than or equal to 0",
            ));
        }
        let declared: Option<i128> = spec
            .containers
            .iter()
            .filter_map(|c| c.resources.as_ref()?.limits.as_ref()?.get(NVIDIA_GPU))
            .map(|q| {
                ParsedQuantity::parse(&q.0)
                    .map(|q| q.millis() / 1000)
                    .unwrap_or(0)
            })
            .reduce(|a, b| a + b);
        if let Some(declared) = declared
            && declared != i128::from(gpus)
        {
            errors.push(FieldError::invalid(
                &gpus_path,
                format!("must equal the {NVIDIA_GPU} limits in the template ({declared}), or leave them unset"),
            ));
        }
    }
}

fn validate_run_policy(policy: &RunPolicy, path: &FieldPath, errors: &mut Vec<FieldError>) {
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
    let positive = [
        ("activeDeadlineSeconds", policy.active_deadline_seconds),
        (
            "schedulingTimeoutSeconds",
            policy.scheduling_timeout_seconds,
        ),
    ];
    for (field, value) in positive {
        if value.is_some_and(|v| v <= 0) {
            errors.push(FieldError::invalid(
                &path.child(field),
                "must be greater than 0",
            ));
        }
    }
}
