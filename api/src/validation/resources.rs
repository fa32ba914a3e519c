//! Validation of resource lists: container requests and limits, gang minimums, quotas.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::field::{FieldError, FieldPath, push_invalid};
use crate::names;
use crate::quantity::ParsedQuantity;
use crate::resources::{
    GPU_MILLI, NVIDIA_GPU, container_gpu_violation, is_gpu_resource, total_gpu_violation,
};

/// Whether a resource list belongs to one container or is a total (quota, gang minimum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListUse {
    Container,
    Total,
}

/// Parses every quantity in `list`, reporting names and values that are invalid; returns
/// the quantities that parsed and were otherwise valid.
pub(crate) fn validate_resource_list(
    list: &BTreeMap<String, Quantity>,
    path: &FieldPath,
    usage: ListUse,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, ParsedQuantity> {
    let mut parsed = BTreeMap::new();
    for (name, quantity) in list {
        let entry = path.key(name);
        push_invalid(errors, &entry, name, names::qualified_name(name));
        if let Some(value) = validate_quantity(name, quantity, &entry, usage, errors) {
            parsed.insert(name.clone(), value);
        }
    }
    parsed
}

/// Checks one quantity of resource `name` at `path`: it parses, is not negative and
/// follows the GPU rules. Returns it when valid.
pub(crate) fn validate_quantity(
    name: &str,
    quantity: &Quantity,
    path: &FieldPath,
    usage: ListUse,
    errors: &mut Vec<FieldError>,
) -> Option<ParsedQuantity> {
    let value = match ParsedQuantity::parse(&quantity.0) {
        Ok(value) => value,
        Err(e) => {
            errors.push(FieldError::invalid(path, e.to_string()));
            return None;
        }
    };
    if value.is_negative() {
        errors.push(FieldError::invalid(
            path,
            "must be greater than or equal to 0",
        ));
        return None;
    }
    let gpu = match usage {
        ListUse::Container => container_gpu_violation(name, &value),
        ListUse::Total => total_gpu_violation(name, &value),
    };
    if let Some(message) = gpu {
        errors.push(FieldError::invalid(path, message));
        return None;
    }
    Some(value)
}

/// Every problem with a container's `resources`.
///
/// Requests must not exceed limits; GPU resources cannot be overcommitted, so a GPU
/// request needs an equal limit; one container cannot mix whole and fractional GPUs.
pub(crate) fn validate_resource_requirements(
    requirements: &ResourceRequirements,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let empty = BTreeMap::new();
    let limits_path = path.child("limits");
    let requests_path = path.child("requests");
    let limits = validate_resource_list(
        requirements.limits.as_ref().unwrap_or(&empty),
        &limits_path,
        ListUse::Container,
        &mut errors,
    );
    let requests = validate_resource_list(
        requirements.requests.as_ref().unwrap_or(&empty),
        &requests_path,
        ListUse::Container,
        &mut errors,
    );
    for (name, request) in &requests {
        let entry = requests_path.key(name);
        match limits.get(name) {
            Some(limit) if is_gpu_resource(name) && request != limit => {
                errors.push(FieldError::invalid(
                    &entry,
                    format!("must be equal to {name} limit of {limit}"),
                ));
            }
            Some(limit) if request > limit => errors.push(FieldError::invalid(
                &entry,
                format!("must be less than or equal to {name} limit of {limit}"),
            )),
            None if is_gpu_resource(name) && !has_entry(&requirements.limits, name) => {
                errors.push(FieldError::forbidden(
                    &entry,
                    format!("{name} cannot be overcommitted: set a limit equal to the request"),
                ))
            }
            _ => {}
        }
    }
    let declares =
        |n: &str| has_entry(&requirements.limits, n) || has_entry(&requirements.requests, n);
    if declares(NVIDIA_GPU) && declares(GPU_MILLI) {
        let field = if has_entry(&requirements.limits, GPU_MILLI) {
            &limits_path
        } else {
            &requests_path
        };
        errors.push(FieldError::forbidden(
            &field.key(GPU_MILLI),
            format!("cannot be combined with {NVIDIA_GPU} in one container"),
        ));
    }
    errors
}

fn has_entry(list: &Option<BTreeMap<String, Quantity>>, name: &str) -> bool {
    list.as_ref().is_some_and(|l| l.contains_key(name))
}
