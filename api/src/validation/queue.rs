//! Validation of `Queue` specs.

use super::field::{FieldError, FieldPath, push_invalid};
use super::resources::{ListUse, validate_quantity};
use crate::coxswain::Queue;
use crate::names;

/// Every problem with a queue's spec (metadata is checked by [`super::validate`]).
pub fn validate_queue(queue: &Queue) -> Vec<FieldError> {
    let spec = &queue.spec;
    let path = FieldPath::new("spec");
    let mut errors = Vec::new();
    let quotas_path = path.child("quotas");
    for (resource, quota) in &spec.quotas {
        let quota_path = quotas_path.key(resource);
        push_invalid(
            &mut errors,
            &quota_path,
            resource,
            names::qualified_name(resource),
        );
        let nominal_path = quota_path.child("nominal");
        validate_quantity(
            resource,
            &quota.nominal,
            &nominal_path,
            ListUse::Total,
            &mut errors,
        );
        if let Some(limit) = &quota.borrowing_limit {
            let limit_path = quota_path.child("borrowingLimit");
            validate_quantity(resource, limit, &limit_path, ListUse::Total, &mut errors);
        }
    }
    if spec.weight.is_some_and(|w| w < 1) {
        errors.push(FieldError::invalid(
            &path.child("weight"),
            "must be greater than or equal to 1",
        ));
    }
    if let Some(parent) = &spec.parent {
        let parent_path = path.child("parent");
        if queue.metadata.name.as_ref() == Some(parent) {
            errors.push(FieldError::invalid(
                &parent_path,
                "a queue cannot be its own parent",
            ));
        }
        push_invalid(
            &mut errors,
            &parent_path,
            parent,
            names::dns1123_label(parent),
        );
    }
    if let Some(cohort) = &spec.cohort {
        push_invalid(
            &mut errors,
            &path.child("cohort"),
            cohort,
            names::dns1123_label(cohort),
        );
    }
    errors
}
