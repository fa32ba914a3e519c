//! `cox top` renderings of a known cluster state against golden files.

use coxswain_api::devices::{GpuDevice, gpu_slice};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;

use super::gpu_figures::{Figures, GpuFigures};

fn node(name: &str, gpus: u32, ready: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {
            "capacity": {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": gpus.to_string()},
            "allocatable": {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": gpus.to_string()},
            "conditions": [{"type": "Ready", "status": ready}]
        }
    }))
    .unwrap()
}

fn gpus(node: &str, indices: impl IntoIterator<Item = u32>) -> Vec<GpuDevice> {
    indices
        .into_iter()
        .map(|index| GpuDevice {
            uuid: format!("GPU-{node}-{index}"),
            index,
            model: "NVIDIA H100 80GB HBM3".into(),
            memory_bytes: 80 << 30,
            nvlink_island: 0,
            simulated: true,
            resource_name: "nvidia.com/gpu".into(),
            ..GpuDevice::default()
        })
        .collect()
}

fn pod(name: &str, node: &str, owner: Option<(&str, &str)>, devices: &[&str], phase: &str) -> Pod {
    let gpus = devices.iter().filter(|d| !d.contains(':')).count();
    let milli: u32 = devices
        .iter()
        .filter_map(|d| d.split_once(':'))
        .map(|(_, m)| m.parse::<u32>().unwrap())
        .sum();
    let mut requests = json!({"cpu": "4", "memory": "16Gi"});
    if gpus > 0 {
        requests["nvidia.com/gpu"] = json!(gpus.to_string());
    }
    if milli > 0 {
        requests["coxswain.dev/gpu-milli"] = json!(milli.to_string());
    }
    let owners: Vec<_> = owner
        .iter()
        .map(|(kind, name)| {
            json!({"apiVersion": "v1", "kind": kind, "name": name, "uid": format!("uid-{name}"), "controller": true})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "namespace": "default",
            "ownerReferences": owners,
            "annotations": {"coxswain.dev/gpu-devices": serde_json::to_string(devices).unwrap()}
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "host", "resources": {"requests": requests}}]
        },
        "status": {"phase": phase}
    }))
    .unwrap()
}

/// Two 8-GPU nodes: a TrainingJob holds node-a, node-b has shares, a Job's GPU, free
/// GPUs and one GPU its agent no longer publishes; a third node has no GPUs.
fn cluster() -> (
    Vec<Node>,
    Vec<k8s_openapi::api::resource::v1::ResourceSlice>,
    Vec<Pod>,
) {
    let nodes = vec![
        node("node-b", 8, "True"),
        node("node-a", 8, "True"),
        node("cpu-1", 0, "False"),
    ];
    let slices = vec![
        gpu_slice("node-a", "nvidia.com/gpu", &gpus("node-a", 0..8)),
        gpu_slice("node-b", "nvidia.com/gpu", &gpus("node-b", 0..7)),
    ];
    let a: Vec<String> = (0..8).map(|i| format!("GPU-node-a-{i}")).collect();
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let pods = vec![
        pod(
            "llama-worker-0",
            "node-a",
            Some(("TrainingJob", "llama")),
            &a[..4],
            "Running",
        ),
        pod(
            "llama-worker-1",
            "node-a",
            Some(("TrainingJob", "llama")),
            &a[4..],
            "Running",
        ),
        pod("notebook", "node-b", None, &["GPU-node-b-0:250"], "Running"),
        pod(
            "serve-x1",
            "node-b",
            Some(("ReplicaSet", "serve-x")),
            &["GPU-node-b-0:500"],
            "Running",
        ),
        pod(
            "serve-x2",
            "node-b",
            Some(("ReplicaSet", "serve-x")),
            &["GPU-node-b-1:500"],
            "Running",
        ),
        pod(
            "eval-7",
            "node-b",
            Some(("Job", "eval")),
            &["GPU-node-b-2"],
            "Pending",
        ),
        pod(
            "eval-6",
            "node-b",
            Some(("Job", "eval")),
            &["GPU-node-b-3"],
            "Succeeded",
        ),
    ];
    (nodes, slices, pods)
}

fn check_golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/cmd/top/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "rendering differs from {}",
        path.display()
    );
}

#[test]
fn gpu_map_matches_the_golden_rendering() {
    let (nodes, slices, pods) = cluster();
    let text = super::gpus::render(&nodes, &slices, &pods, &Figures::new());
    check_golden("gpus.txt", &text);
    // The parts that matter, spelled out so a careless golden update is caught.
    assert!(
        text.contains("16 GPU(s): 10.25 allocated, 4 free, 1 unavailable"),
        "{text}"
    );
    let node_a = text.lines().find(|l| l.starts_with("node-a")).unwrap();
    assert!(node_a.ends_with("A A A A A A A A"), "{node_a}");
    let node_b = text.lines().find(|l| l.starts_with("node-b")).unwrap();
    assert!(node_b.ends_with("* c D . . . . x"), "{node_b}");
    assert!(
        text.contains("(no GPU utilization from node-a, node-b: "),
        "{text}"
    );
}

#[test]
fn gpu_map_with_utilization_matches_the_golden_rendering() {
    let (nodes, slices, pods) = cluster();
    // node-a's agent relays its plugin: GPU i at 10*i+5 %, GPU 3 unhealthy, GPU 7 unreported.
    let node_a = (0..7)
        .map(|i| {
            let figures = GpuFigures {
                utilization: Some(f64::from(10 * i + 5)),
                healthy: Some(i != 3),
            };
            (format!("GPU-node-a-{i}"), figures)
        })
        .collect();
    let figures = Figures::from([("node-a".to_string(), node_a)]);
    let text = super::gpus::render(&nodes, &slices, &pods, &figures);
    check_golden("gpus_utilization.txt", &text);
    let row = text.lines().find(|l| l.starts_with("node-a")).unwrap();
    assert!(
        row.ends_with("A  5% A 15% A 25% A bad A 45% A 55% A 65% A   -"),
        "{row}"
    );
    // The average of the GPUs with a figure (5, 15, 25, 35, 45, 55, 65).
    assert!(row.contains(" 35% "), "{row}");
    let node_b = text.lines().find(|l| l.starts_with("node-b")).unwrap();
    assert!(node_b.ends_with("* c D . . . . x"), "{node_b}");
    assert!(text.contains("(no GPU utilization from node-b: "), "{text}");
    assert!(
        text.contains("bad: the plugin reports it unhealthy"),
        "{text}"
    );
}

#[test]
fn node_and_pod_tables_match_the_golden_renderings() {
    let (nodes, _, pods) = cluster();
    check_golden("nodes.txt", &super::tables::nodes(&nodes, &pods));
    check_golden("pods.txt", &super::tables::pods(&pods, true));
}

#[test]
fn an_empty_cluster_says_so() {
    let text = super::gpus::render(&[node("cpu-1", 0, "True")], &[], &[], &Figures::new());
    assert!(text.contains("No node reports GPUs."), "{text}");
}
