//! Validation of pod specs, for pods and for the templates of workloads.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

use super::field::{FieldError, FieldPath, push_invalid};
use super::resources::validate_resource_requirements;
use crate::names;

/// Values of a pod's `restartPolicy`.
pub const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
/// Values of a container's `imagePullPolicy`.
pub const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];

/// Every problem with a pod's spec (metadata is checked by [`super::validate`]).
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let path = FieldPath::new("spec");
    match &pod.spec {
        Some(spec) => validate_pod_spec(spec, &path),
        None => vec![FieldError::required(&path, "a pod needs a spec")],
    }
}

/// Every problem with `spec`, whose path is `path` (`spec`, or
/// `spec.replicaGroups[0].template.spec` for a template).
pub fn validate_pod_spec(spec: &PodSpec, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let volumes = validate_volumes(spec, path, &mut errors);
    if spec.containers.is_empty() {
        errors.push(FieldError::required(
            &path.child("containers"),
            "at least one container is required",
        ));
    }
    let mut names = HashSet::new();
    let init = spec.init_containers.iter().flatten();
    let lists = [
        ("initContainers", init.collect::<Vec<_>>()),
        ("containers", spec.containers.iter().collect()),
    ];
    for (field, containers) in lists {
        for (index, container) in containers.into_iter().enumerate() {
            let container_path = path.child(field).index(index);
            validate_container(container, &container_path, &volumes, &mut errors);
            if !container.name.is_empty() && !names.insert(container.name.as_str()) {
                errors.push(FieldError::duplicate(
                    &container_path.child("name"),
                    &container.name,
                ));
            }
        }
    }
    if let Some(policy) = &spec.restart_policy
        && !RESTART_POLICIES.contains(&policy.as_str())
    {
        errors.push(FieldError::not_supported(
            &path.child("restartPolicy"),
            policy,
            &RESTART_POLICIES,
        ));
    }
    if spec.termination_grace_period_seconds.is_some_and(|s| s < 0) {
        errors.push(FieldError::invalid(
            &path.child("terminationGracePeriodSeconds"),
            "must be greater than or equal to 0",
        ));
    }
    if spec.active_deadline_seconds.is_some_and(|s| s <= 0) {
        errors.push(FieldError::invalid(
            &path.child("activeDeadlineSeconds"),
            "must be greater than 0",
        ));
    }
    errors
}

/// Checks volume names; returns the set of declared volume names.
fn validate_volumes<'a>(
    spec: &'a PodSpec,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> HashSet<&'a str> {
    let mut declared = HashSet::new();
    for (index, volume) in spec.volumes.iter().flatten().enumerate() {
        let name_path = path.child("volumes").index(index).child("name");
        if volume.name.is_empty() {
            errors.push(FieldError::required(&name_path, "a volume needs a name"));
            continue;
        }
        push_invalid(
            errors,
            &name_path,
            &volume.name,
            names::dns1123_label(&volume.name),
        );
        if !declared.insert(volume.name.as_str()) {
            errors.push(FieldError::duplicate(&name_path, &volume.name));
        }
        let sources = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten());
        for (i, source) in sources.enumerate() {
            let Some(token) = &source.service_account_token else {
                continue;
            };
            let token_path = path
                .child("volumes")
                .index(index)
                .child("projected")
                .child("sources")
                .index(i)
                .child("serviceAccountToken");
            if let Some(seconds) = token.expiration_seconds
                && let Err(message) = token_expiration(seconds)
            {
                errors.push(FieldError::invalid(
                    &token_path.child("expirationSeconds"),
                    message,
                ));
            }
            if token.path.is_empty() {
                errors.push(FieldError::required(
                    &token_path.child("path"),
                    "the token's file name is required",
                ));
            }
        }
    }
    declared
}

/// kube-apiserver's bounds on a requested service-account token lifetime (a projected
/// `serviceAccountToken`'s or a TokenRequest's `expirationSeconds`): at least 10 minutes,
/// at most 2^32 seconds.
pub fn token_expiration(seconds: i64) -> Result<(), String> {
    if seconds < 600 {
        return Err(format!(
            "{seconds}: may not specify a duration less than 10 minutes"
        ));
    }
    if seconds > 1 << 32 {
        return Err(format!(
            "{seconds}: may not specify a duration larger than 2^32 seconds"
        ));
    }
    Ok(())
}

fn validate_container(
    container: &Container,
    path: &FieldPath,
    volumes: &HashSet<&str>,
    errors: &mut Vec<FieldError>,
) {
    let name_path = path.child("name");
    if container.name.is_empty() {
        errors.push(FieldError::required(&name_path, "a container needs a name"));
    } else {
        push_invalid(
            errors,
            &name_path,
            &container.name,
            names::dns1123_label(&container.name),
        );
    }
    if container
        .image
        .as_deref()
        .is_none_or(|i| i.trim().is_empty())
    {
        errors.push(FieldError::required(
            &path.child("image"),
            "an image is required",
        ));
    }
    if let Some(policy) = &container.image_pull_policy
        && !PULL_POLICIES.contains(&policy.as_str())
    {
        errors.push(FieldError::not_supported(
            &path.child("imagePullPolicy"),
            policy,
            &PULL_POLICIES,
        ));
    }
    if let Some(resources) = &container.resources {
        errors.extend(validate_resource_requirements(
            resources,
            &path.child("resources"),
        ));
    }
    for (index, port) in container.ports.iter().flatten().enumerate() {
        if !(1..=65535).contains(&port.container_port) {
            errors.push(FieldError::invalid(
                &path.child("ports").index(index).child("containerPort"),
                "must be between 1 and 65535, inclusive",
            ));
        }
    }
    for (index, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let mount_path = path.child("volumeMounts").index(index);
        if !volumes.contains(mount.name.as_str()) {
            errors.push(FieldError::not_found(
                &mount_path.child("name"),
                format!("\"{}\": no volume of this name in the pod", mount.name),
            ));
        }
        if mount.mount_path.is_empty() {
            errors.push(FieldError::required(
                &mount_path.child("mountPath"),
                "a mount path is required",
            ));
        }
        if let Some(sub_path) = mount.sub_path.as_deref()
            && let Err(message) = local_descending_path(sub_path)
        {
            errors.push(FieldError::invalid(&mount_path.child("subPath"), message));
        }
    }
    if let Some(dir) = container.working_dir.as_deref().filter(|d| !d.is_empty())
        && let Err(message) = clean_working_dir(dir)
    {
        errors.push(FieldError::invalid(&path.child("workingDir"), message));
    }
}

/// Kubernetes' `validateLocalDescendingPath`: relative, and no `..` component.
fn local_descending_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        return Err(format!("{path:?}: must be a relative path"));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(format!("{path:?}: must not contain '..'"));
    }
    Ok(())
}

/// An absolute, clean working directory outside /proc (coxswain's rule, stricter than
/// Kubernetes': `/proc/self/fd/<n>` reached host directories through runc before 1.1.12,
/// CVE-2024-21626; the agent refuses such a directory too, whatever set it).
fn clean_working_dir(dir: &str) -> Result<(), String> {
    if !dir.starts_with('/') {
        return Err(format!("{dir:?}: must be an absolute path"));
    }
    // A trailing `/`, as some images' working directories have, is fine.
    let parts: Vec<&str> = dir.trim_end_matches('/').split('/').skip(1).collect();
    let clean = parts
        .iter()
        .all(|p| !p.is_empty() && *p != "." && *p != "..");
    if !clean || dir.contains('\0') {
        return Err(format!(
            "{dir:?}: must be a clean path (no '.', '..' or '//')"
        ));
    }
    if parts.first() == Some(&"proc") {
        return Err(format!("{dir:?}: must not be under /proc"));
    }
    Ok(())
}
