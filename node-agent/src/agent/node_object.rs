//! The Node object the agent registers: labels, capacity and allocatable,
//! addresses, node info, the kubelet endpoint (the agent's log service) and
//! the Ready condition, as a kubelet would report them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::host::{HostFacts, kubernetes_arch};

/// Pods a node accepts (kubelet's default `--max-pods`).
pub const MAX_PODS: u32 = 110;

/// The JSON of the core/v1 Node for `name` on this host, whose agent serves
/// logs on `logs_port`, with the operator's extra `labels`.
pub fn node_json(
    name: &str,
    facts: &HostFacts,
    labels: &BTreeMap<String, String>,
    logs_port: u16,
    now: &str,
) -> Value {
    let arch = kubernetes_arch();
    let mut all_labels: BTreeMap<String, String> = BTreeMap::from([
        ("kubernetes.io/hostname".into(), name.to_string()),
        ("kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), arch.into()),
        ("beta.kubernetes.io/os".into(), "linux".into()),
        ("beta.kubernetes.io/arch".into(), arch.into()),
    ]);
    all_labels.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let resources = json!({
        "cpu": facts.cpus.to_string(),
        "memory": format!("{}Ki", facts.memory_bytes / 1024),
        "pods": MAX_PODS.to_string(),
    });
    let mut addresses = Vec::new();
    if let Some(ip) = facts.internal_ip {
        addresses.push(json!({"type": "InternalIP", "address": ip.to_string()}));
    }
    let hostname = if facts.hostname.is_empty() {
        name
    } else {
        &facts.hostname
    };
    addresses.push(json!({"type": "Hostname", "address": hostname}));
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": addresses,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": logs_port}},
            "nodeInfo": {
                "machineID": facts.machine_id,
                "systemUUID": facts.machine_id,
                "bootID": facts.boot_id,
                "kernelVersion": facts.kernel_version,
                "osImage": facts.os_image,
                "containerRuntimeVersion": facts.runtime_version,
                "kubeletVersion": format!("coxswain/{}", env!("CARGO_PKG_VERSION")),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": arch,
            },
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "coxswain agent is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_carries_labels_resources_addresses_and_the_logs_port() {
        let facts = HostFacts {
            hostname: "box".into(),
            cpus: 8,
            memory_bytes: 16 * 1024 * 1024 * 1024,
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            runtime_version: "runc://1.1.5".into(),
            machine_id: "abc".into(),
            boot_id: "def".into(),
            internal_ip: Some("10.0.0.5".parse().unwrap()),
        };
        let labels = BTreeMap::from([("topology.coxswain.dev/rack".into(), "r1".into())]);
        let node = node_json("n1", &facts, &labels, 10250, "2026-01-01T00:00:00Z");
        let parsed: k8s_openapi::api::core::v1::Node = serde_json::from_value(node).unwrap();
        let meta_labels = parsed.metadata.labels.unwrap();
        assert_eq!(meta_labels["kubernetes.io/hostname"], "n1");
        assert_eq!(meta_labels["kubernetes.io/os"], "linux");
        assert_eq!(meta_labels["topology.coxswain.dev/rack"], "r1");
        let status = parsed.status.unwrap();
        let capacity = status.capacity.unwrap();
        assert_eq!(capacity["cpu"].0, "8");
        assert_eq!(capacity["memory"].0, "16777216Ki");
        assert_eq!(capacity["pods"].0, "110");
        let addresses = status.addresses.unwrap();
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[0].address, "10.0.0.5");
        assert_eq!(addresses[1].type_, "Hostname");
        let port = status
            .daemon_endpoints
            .unwrap()
            .kubelet_endpoint
            .unwrap()
            .port;
        assert_eq!(port, 10250);
        let info = status.node_info.unwrap();
        assert_eq!(info.container_runtime_version, "runc://1.1.5");
        assert!(info.kubelet_version.starts_with("coxswain/"));
        let ready = &status.conditions.unwrap()[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "True")
        );
    }
}
