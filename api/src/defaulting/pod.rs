//! Pod defaults, as Kubernetes applies them (`pkg/apis/core/v1/defaults.go`).

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

/// Seconds a pod gets to stop after SIGTERM when its spec says nothing.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;

/// Fills a pod's defaults.
pub fn default_pod(pod: &mut Pod) {
    if let Some(spec) = &mut pod.spec {
        default_pod_spec(spec);
    }
}

/// Fills a pod spec's defaults: `restartPolicy: Always`, `dnsPolicy: ClusterFirst`,
/// a 30 second grace period, and each container's defaults.
pub fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy
        .get_or_insert_with(|| "Always".to_string());
    spec.dns_policy
        .get_or_insert_with(|| "ClusterFirst".to_string());
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    for container in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(&mut spec.containers)
    {
        default_container(container);
    }
}

/// Fills a container's defaults: the image pull policy (`Always` for `:latest` or an
/// untagged image, `IfNotPresent` otherwise), the termination message settings, and
/// requests equal to limits for resources with a limit but no request.
pub fn default_container(container: &mut Container) {
    if container.image_pull_policy.is_none()
        && let Some(image) = &container.image
    {
        container.image_pull_policy = Some(pull_policy_for(image).to_string());
    }
    container
        .termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".to_string());
    container
        .termination_message_policy
        .get_or_insert_with(|| "File".to_string());
    if let Some(resources) = &mut container.resources
        && let Some(limits) = &resources.limits
    {
        let requests = resources.requests.get_or_insert_with(Default::default);
        for (name, limit) in limits {
            requests
                .entry(name.clone())
                .or_insert_with(|| limit.clone());
        }
    }
}

fn pull_policy_for(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // The tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

#[cfg(test)]
mod tests {
    use super::pull_policy_for;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy_for("busybox"), "Always");
        assert_eq!(pull_policy_for("busybox:latest"), "Always");
        assert_eq!(pull_policy_for("busybox:1.36"), "IfNotPresent");
        assert_eq!(pull_policy_for("registry:5000/team/app"), "Always");
        assert_eq!(pull_policy_for("registry:5000/team/app:v2"), "IfNotPresent");
        assert_eq!(pull_policy_for("app@sha256:abcd"), "IfNotPresent");
    }
}
