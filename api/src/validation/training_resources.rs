//! Resource names in training-job templates (`TrainingJob` groups, `PyTorchJob` replicas).
//!
//! Admission cannot know which device plugins the nodes run, but it can refuse a GPU that
//! no device plugin could ever serve: a device plugin's resource is an extended resource,
//! `<vendor domain>/<type>` (`nvidia.com/gpu`). Kubernetes' rule for container resources is
//! applied: a name without a domain must be a standard resource (`cpu`, `memory`,
//! `ephemeral-storage`, `hugepages-<size>`), and so must a `kubernetes.io/` one. So
//! `gpu: 1` or `nvidia-gpu: 1` in a group's template is refused naming the field instead
//! of leaving the gang pending forever.

use k8s_openapi::api::core::v1::PodSpec;

use super::field::{FieldError, FieldPath};
use crate::names;
use crate::resources::{CPU, EPHEMERAL_STORAGE, MEMORY};

/// Whether `name` is a resource a container may ask for without a device plugin.
fn is_standard(name: &str) -> bool {
    let bare = name.strip_prefix("kubernetes.io/").unwrap_or(name);
    [CPU, MEMORY, EPHEMERAL_STORAGE].contains(&bare) || bare.starts_with("hugepages-")
}

/// Whether `name` is `<domain>/<name>` outside `kubernetes.io`: what a device plugin
/// registers.
fn is_extended(name: &str) -> bool {
    match name.split_once('/') {
        Some((domain, rest)) => {
            !domain.is_empty()
                && !rest.is_empty()
                && domain != "kubernetes.io"
                && !domain.ends_with(".kubernetes.io")
                && !name.starts_with("requests.")
        }
        None => false,
    }
}

/// Every resource name in `spec`'s containers (init containers too) that is neither
/// standard nor an extended resource, with its field path under `spec_path`.
pub(crate) fn validate_template_resource_names(
    spec: &PodSpec,
    spec_path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let lists = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    for (field, containers) in lists {
        for (index, container) in containers.iter().enumerate() {
            let Some(resources) = &container.resources else {
                continue;
            };
            let resources_path = spec_path.child(field).index(index).child("resources");
            for (list, names) in [
                ("limits", &resources.limits),
                ("requests", &resources.requests),
            ] {
                for name in names.iter().flat_map(|m| m.keys()) {
                    // A malformed name is reported by the pod's own validation.
                    let malformed = !names::qualified_name(name).is_empty();
                    if malformed || is_standard(name) || is_extended(name) {
                        continue;
                    }
                    errors.push(FieldError::invalid(
                        &resources_path.child(list).key(name),
                        format!(
                            "{name:?} is not a standard resource (cpu, memory, \
                             ephemeral-storage, hugepages-<size>), and no device plugin \
                             can serve it: GPUs and other devices are extended resources \
                             named <vendor domain>/<type>, like nvidia.com/gpu"
                        ),
                    ));
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_extended_names_pass_others_do_not() {
        for name in [
            "cpu",
            "memory",
            "hugepages-2Mi",
            "nvidia.com/gpu",
            "coxswain.dev/gpu-milli",
            "amd.com/gpu",
        ] {
            assert!(is_standard(name) || is_extended(name), "{name}");
        }
        for name in [
            "gpu",
            "nvidia-gpu",
            "kubernetes.io/gpu",
            "/gpu",
            "nvidia.com/",
        ] {
            assert!(!is_standard(name) && !is_extended(name), "{name}");
        }
    }
}
