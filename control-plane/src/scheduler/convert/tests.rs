//! Unit tests of the Kubernetes → scheduler conversions.

use super::*;

fn pod(json: serde_json::Value) -> Pod {
    serde_json::from_value(json).expect("valid pod")
}

#[test]
fn pod_requests_gpus_gang_and_constraints() {
    let p = pod(serde_json::json!({
        "metadata": {
            "name": "w0", "namespace": "ml",
            "labels": {"scheduling.coxswain.dev/pod-group": "job"},
            "annotations": {"coxswain.dev/gpu-model": "H100|A100"}
        },
        "spec": {
            "priority": 7,
            "nodeSelector": {"pool": "a"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "z", "operator": "In", "values": ["1"]}]}]
            }}},
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "1500m", "memory": "1Gi", "example.com/nic": "1"},
                                             "limits": {"nvidia.com/gpu": "2"}}},
                {"name": "b", "resources": {"requests": {"cpu": "500m"}}}
            ]
        }
    }));
    let info = pod_info(&p, 3).unwrap();
    assert_eq!(&*info.key, "ml/w0");
    assert_eq!((info.priority, info.seq, info.gpus), (7, 3, 2));
    assert_eq!(info.requests.cpu_milli, 2000);
    assert_eq!(info.requests.memory, 1 << 30);
    assert_eq!(info.requests.extended("example.com/nic"), 1);
    assert_eq!(info.gpu_models, vec!["H100", "A100"]);
    assert_eq!(info.group.as_deref(), Some("ml/job"));
    assert_eq!(info.affinity[0][0].op, RequirementOp::In);
    assert_eq!(info.tolerations[0].op, TolerationOp::Exists);
}

#[test]
fn bound_pod_carries_its_devices_and_bad_fields_are_named() {
    let p = pod(serde_json::json!({
        "metadata": {"name": "s", "annotations": {"coxswain.dev/gpu-devices": "[\"GPU-1:250\"]"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "a", "resources": {"requests": {"coxswain.dev/gpu-milli": "250"}}}]}
    }));
    let info = pod_info(&p, 0).unwrap();
    assert_eq!(info.gpu_milli, 250);
    assert_eq!(info.node.as_deref(), Some("n1"));
    assert_eq!(info.devices[0].milli, 250);
    let bad = pod(serde_json::json!({
        "metadata": {"name": "x"},
        "spec": {"tolerations": [{"operator": "Sometimes"}], "containers": []}
    }));
    let err = pod_info(&bad, 0).unwrap_err();
    assert!(
        err.to_string().contains("spec.tolerations[0].operator"),
        "{err}"
    );
}

#[test]
fn node_allocatable_taints_and_cordon() {
    let n: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "n1", "labels": {"topology.coxswain.dev/rack": "r1"}},
        "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "NoExecute"}]},
        "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": "8"}}
    }))
    .unwrap();
    let info = node_info(&n).unwrap();
    assert_eq!(info.allocatable, Resources::new(64_000, 256 << 30, 110));
    assert!(info.unschedulable);
    assert_eq!(info.taints[0].effect, TaintEffect::NoExecute);
    assert!(info.gpus.is_empty());
}
