//! Kubernetes' QoS classes and the pod-level cgroup limits derived from a pod spec,
//! following kubelet's `pkg/kubelet/qos` and `cm/helpers_linux.go`.

use std::collections::BTreeMap;

use coxswain_api::k8s::{Container, PodSpec};
use coxswain_api::quantity::parse_quantity;

/// A pod's quality-of-service class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has CPU and memory limits equal to its requests.
    Guaranteed,
    /// Some container has a request or limit, but the pod is not Guaranteed.
    Burstable,
    /// No container has any CPU or memory request or limit.
    BestEffort,
}

impl QosClass {
    /// The name Kubernetes uses in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }

    /// The sub-cgroup of the coxswain root that holds pods of this class
    /// (Guaranteed pods live directly under the root, as in kubelet).
    pub fn cgroup_dir(self) -> Option<&'static str> {
        match self {
            QosClass::Guaranteed => None,
            QosClass::Burstable => Some("burstable"),
            QosClass::BestEffort => Some("besteffort"),
        }
    }
}

/// CPU period used for quotas (kubelet's default, 100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;
/// Default pids limit for a pod cgroup.
pub const DEFAULT_PIDS_LIMIT: u64 = 4096;

/// The limits written into a pod cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLimits {
    /// The pod's QoS class.
    pub qos: QosClass,
    /// cgroup v1 `cpu.shares` (2..=262144); v2 weight is derived from it.
    pub cpu_shares: u64,
    /// CFS quota in microseconds per [`CPU_PERIOD_US`]; `None` is unlimited.
    pub cpu_quota_us: Option<u64>,
    /// Memory limit in bytes; `None` is unlimited.
    pub memory_bytes: Option<u64>,
    /// Maximum number of tasks.
    pub pids: u64,
}

/// A per-container resource amount (requests or limits), `None` when unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerAmounts {
    /// CPU in millicores.
    pub cpu_millis: Option<u64>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
}

fn amounts(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> ContainerAmounts {
    let get = |key: &str| {
        map.and_then(|m| m.get(key))
            .and_then(|q| parse_quantity(q).ok())
    };
    ContainerAmounts {
        cpu_millis: get("cpu").map(|q| q.millis().max(0) as u64),
        memory_bytes: get("memory").map(|q| q.ceil_units().max(0) as u64),
    }
}

/// A container's (requests, limits); requests default to limits as in Kubernetes.
pub fn container_amounts(c: &Container) -> (ContainerAmounts, ContainerAmounts) {
    let res = c.resources.as_ref();
    let limits = amounts(res.and_then(|r| r.limits.as_ref()));
    let mut requests = amounts(res.and_then(|r| r.requests.as_ref()));
    requests.cpu_millis = requests.cpu_millis.or(limits.cpu_millis);
    requests.memory_bytes = requests.memory_bytes.or(limits.memory_bytes);
    (requests, limits)
}

/// cgroup v1 shares for `millis` of CPU (kubelet's `MilliCPUToShares`).
pub fn millis_to_shares(millis: u64) -> u64 {
    (millis * 1024 / 1000).clamp(2, 262_144)
}

/// The pod's QoS class (app and init containers both count).
pub fn qos_class(spec: &PodSpec) -> QosClass {
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let pairs: Vec<_> = all.iter().map(|c| container_amounts(c)).collect();
    let any = pairs
        .iter()
        .any(|(r, l)| *r != ContainerAmounts::default() || *l != ContainerAmounts::default());
    if !any {
        return QosClass::BestEffort;
    }
    let guaranteed = pairs.iter().all(|(r, l)| {
        l.cpu_millis.is_some()
            && l.memory_bytes.is_some()
            && r.cpu_millis == l.cpu_millis
            && r.memory_bytes == l.memory_bytes
    });
    if guaranteed {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// The pod cgroup's limits: sums over app containers, maxed with each init container
/// (init containers run one at a time), unlimited when any container is unlimited.
pub fn pod_limits(spec: &PodSpec) -> PodLimits {
    let qos = qos_class(spec);
    let apps: Vec<_> = spec.containers.iter().map(container_amounts).collect();
    let inits: Vec<_> = spec
        .init_containers
        .iter()
        .flatten()
        .map(container_amounts)
        .collect();
    let sum_req_cpu: u64 = apps.iter().filter_map(|(r, _)| r.cpu_millis).sum();
    let max_init_cpu = inits
        .iter()
        .filter_map(|(r, _)| r.cpu_millis)
        .max()
        .unwrap_or(0);
    let total = |f: fn(&ContainerAmounts) -> Option<u64>| -> Option<u64> {
        let app: Option<u64> = apps.iter().map(|(_, l)| f(l)).sum();
        let init: Option<Vec<u64>> = inits.iter().map(|(_, l)| f(l)).collect();
        Some(app?.max(init?.into_iter().max().unwrap_or(0)))
    };
    PodLimits {
        qos,
        cpu_shares: if qos == QosClass::BestEffort {
            2
        } else {
            millis_to_shares(sum_req_cpu.max(max_init_cpu))
        },
        cpu_quota_us: total(|l| l.cpu_millis).map(|m| (m * CPU_PERIOD_US / 1000).max(1000)),
        memory_bytes: total(|l| l.memory_bytes),
        pids: DEFAULT_PIDS_LIMIT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(resources: &[serde_json::Value]) -> PodSpec {
        let containers: Vec<_> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| serde_json::json!({"name": format!("c{i}"), "resources": r}))
            .collect();
        serde_json::from_value(serde_json::json!({ "containers": containers })).unwrap()
    }

    #[test]
    fn classes_follow_kubernetes() {
        let none = serde_json::json!({});
        let full = serde_json::json!({"limits": {"cpu": "500m", "memory": "64Mi"}});
        let req_only = serde_json::json!({"requests": {"cpu": "250m"}});
        assert_eq!(
            qos_class(&pod(std::slice::from_ref(&none))),
            QosClass::BestEffort
        );
        assert_eq!(
            qos_class(&pod(&[full.clone(), full.clone()])),
            QosClass::Guaranteed
        );
        assert_eq!(qos_class(&pod(&[full.clone(), none])), QosClass::Burstable);
        assert_eq!(qos_class(&pod(&[req_only])), QosClass::Burstable);
    }

    #[test]
    fn limits_sum_over_containers() {
        let full = serde_json::json!({"limits": {"cpu": "500m", "memory": "64Mi"}});
        let l = pod_limits(&pod(&[full.clone(), full]));
        assert_eq!(l.cpu_shares, 1024);
        assert_eq!(l.cpu_quota_us, Some(100_000));
        assert_eq!(l.memory_bytes, Some(128 << 20));
        let burst = pod_limits(&pod(&[serde_json::json!({"requests": {"cpu": "100m"}})]));
        assert_eq!(
            (burst.cpu_shares, burst.cpu_quota_us, burst.memory_bytes),
            (102, None, None)
        );
        assert_eq!(pod_limits(&pod(&[serde_json::json!({})])).cpu_shares, 2);
    }
}
