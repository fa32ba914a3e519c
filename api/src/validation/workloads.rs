//! Validation of the pod templates inside Kubernetes workloads.
//!
//! Deployments, replica sets, daemon sets, jobs and cron jobs get their metadata checked
//! like every kind, and their pod template checked like a pod (so GPU rules hold for
//! every pod coxswain will create), plus the restart policies each controller allows.
//! The rest of their specs (selectors, strategies, schedules) is not validated yet.

use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::field::{FieldError, FieldPath};
use super::metadata::validate_labels;
use super::pod::validate_pod_spec;
use crate::Object;

/// Every problem with the pod template of a workload; nothing for other kinds.
pub fn validate_workload_template(object: &Object) -> Vec<FieldError> {
    let template_path = FieldPath::new("spec").child("template");
    let (template, path, allowed): (Option<&PodTemplateSpec>, FieldPath, &[&str]) = match object {
        Object::Deployment(o) => (Some(&o.spec.template), template_path, &["Always"]),
        Object::ReplicaSet(o) => (o.spec.template.as_ref(), template_path, &["Always"]),
        Object::DaemonSet(o) => (Some(&o.spec.template), template_path, &["Always"]),
        Object::Job(o) => (
            o.spec.as_ref().map(|s| &s.template),
            template_path,
            &["OnFailure", "Never"],
        ),
        Object::CronJob(o) => (
            o.spec.job_template.spec.as_ref().map(|s| &s.template),
            FieldPath::new("spec")
                .child("jobTemplate")
                .child("spec")
                .child("template"),
            &["OnFailure", "Never"],
        ),
        _ => return Vec::new(),
    };
    let Some(template) = template else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    if let Some(meta) = &template.metadata {
        errors.extend(validate_labels(meta, &path.child("metadata")));
    }
    let spec_path = path.child("spec");
    let Some(spec) = &template.spec else {
        errors.push(FieldError::required(
            &spec_path,
            "a pod template needs a spec",
        ));
        return errors;
    };
    errors.extend(validate_pod_spec(spec, &spec_path));
    if let Some(policy) = &spec.restart_policy
        && crate::validation::RESTART_POLICIES.contains(&policy.as_str())
        && !allowed.contains(&policy.as_str())
    {
        errors.push(FieldError::not_supported(
            &spec_path.child("restartPolicy"),
            policy,
            allowed,
        ));
    }
    errors
}
