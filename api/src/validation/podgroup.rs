//! Validation of `PodGroup` specs.

use super::field::{FieldError, FieldPath, push_invalid};
use super::resources::{ListUse, validate_resource_list};
use crate::coxswain::PodGroup;
use crate::names;

/// Every problem with a pod group's spec (metadata is checked by [`super::validate`]).
pub fn validate_pod_group(group: &PodGroup) -> Vec<FieldError> {
    let spec = &group.spec;
    let path = FieldPath::new("spec");
    let mut errors = Vec::new();
    if spec.min_member < 1 {
        errors.push(FieldError::invalid(
            &path.child("minMember"),
            "must be greater than or equal to 1",
        ));
    }
    if let Some(resources) = &spec.min_resources {
        validate_resource_list(
            resources,
            &path.child("minResources"),
            ListUse::Total,
            &mut errors,
        );
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
    if spec.schedule_timeout_seconds.is_some_and(|s| s <= 0) {
        errors.push(FieldError::invalid(
            &path.child("scheduleTimeoutSeconds"),
            "must be greater than 0",
        ));
    }
    errors
}
