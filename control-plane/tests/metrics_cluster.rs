//! Cluster gauges from the API: nodes by readiness, GPUs per node, fragmentation, pods by
//! phase and training jobs by state, all created through the in-process client.

mod metrics_support;

use std::sync::Arc;
use std::time::Duration;

use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::client::in_process;
use coxswain_control_plane::metrics::{Metrics, run_cluster_collector};
use coxswain_control_plane::store::EmbeddedStore;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use metrics_support::{promtool_check, sample};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A sample's name, its exact labels and the value it should have.
type Expectation<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// Waits until every expectation holds in a scrape; panics with the last scrape after a
/// generous bound (a failure bound, not a timing assertion).
async fn until(metrics: &Metrics, expected: &[Expectation<'_>]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics.encode();
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(name, labels, value)| sample(&text, name, labels) != Some(*value))
            .map(|(name, labels, value)| {
                format!(
                    "{name}{labels:?}: want {value}, have {:?}",
                    sample(&text, name, labels)
                )
            })
            .collect();
        if wrong.is_empty() {
            return text;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("gauges never settled: {wrong:#?}\n--- scrape ---\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn node(api: &Api<Node>, name: &str, ready: Option<&str>, gpus: &str) {
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
    let mut status = json!({"allocatable": {"nvidia.com/gpu": gpus, "cpu": "64"}});
    if let Some(ready) = ready {
        status["conditions"] = json!([{"type": "Ready", "status": ready}]);
    }
    let patch = Patch::Merge(json!({"status": status}));
    api.patch_status(
        created.metadata.name.as_deref().unwrap(),
        &PatchParams::default(),
        &patch,
    )
    .await
    .unwrap();
}

async fn pod(
    api: &Api<Pod>,
    name: &str,
    node: Option<&str>,
    resource: &str,
    amount: &str,
    phase: &str,
) {
    let mut spec = json!({"containers": [{
        "name": "c",
        "image": "busybox",
        "resources": {"limits": {resource: amount}}
    }]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    let object = json!({"metadata": {"name": name}, "spec": spec});
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object).unwrap(),
    )
    .await
    .unwrap();
    if phase != "Pending" {
        let patch = Patch::Merge(json!({"status": {"phase": phase}}));
        api.patch_status(name, &PatchParams::default(), &patch)
            .await
            .unwrap();
    }
}

fn training_job(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "coxswain.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicaGroups": [{
            "name": "worker",
            "replicas": 1,
            "template": {"spec": {"containers": [{"name": "t", "image": "busybox"}]}}
        }]}
    }))
    .unwrap()
}

#[tokio::test]
async fn cluster_gauges_follow_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let shutdown = CancellationToken::new();
    let server = ApiServer::new(store, shutdown.clone()).await.unwrap();
    let client = in_process(&server);
    let metrics = Metrics::new();
    let collector = tokio::spawn(run_cluster_collector(
        client.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    let nodes: Api<Node> = Api::all(client.clone());
    node(&nodes, "n1", Some("True"), "8").await;
    node(&nodes, "n2", Some("False"), "4").await;
    node(&nodes, "n3", None, "0").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pod(
        &pods,
        "running",
        Some("n1"),
        "nvidia.com/gpu",
        "2",
        "Running",
    )
    .await;
    pod(
        &pods,
        "finished",
        Some("n1"),
        "nvidia.com/gpu",
        "4",
        "Succeeded",
    )
    .await;
    pod(
        &pods,
        "share",
        Some("n2"),
        "coxswain.dev/gpu-milli",
        "500",
        "Running",
    )
    .await;
    pod(&pods, "wait-4a", None, "nvidia.com/gpu", "4", "Pending").await;
    pod(&pods, "wait-4b", None, "nvidia.com/gpu", "4", "Pending").await;
    pod(&pods, "wait-1", None, "nvidia.com/gpu", "1", "Pending").await;
    let jobs_resource = ApiResource {
        group: "coxswain.dev".into(),
        version: "v1alpha1".into(),
        api_version: "coxswain.dev/v1alpha1".into(),
        kind: "TrainingJob".into(),
        plural: "trainingjobs".into(),
    };
    let jobs: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &jobs_resource);
    for name in ["train-a", "train-b"] {
        jobs.create(&PostParams::default(), &training_job(name))
            .await
            .unwrap();
    }
    let conditions = json!({"status": {"conditions": [
        {"type": "Created", "status": "True", "reason": "Created", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Running", "status": "True", "reason": "Running", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    ]}});
    jobs.patch_status(
        "train-a",
        &PatchParams::default(),
        &Patch::Merge(conditions),
    )
    .await
    .unwrap();

    // Free GPUs: n1 8-2 = 6, n2 4-1 (a share rounds up to one GPU) = 3. The most common
    // pending request is 4 GPUs, which n2 cannot host: 3 of 9 free GPUs are stranded.
    let text = until(
        &metrics,
        &[
            (
                "coxswain_nodes",
                &[("condition", "Ready"), ("status", "True")],
                1.0,
            ),
            (
                "coxswain_nodes",
                &[("condition", "Ready"), ("status", "False")],
                1.0,
            ),
            (
                "coxswain_nodes",
                &[("condition", "Ready"), ("status", "Unknown")],
                1.0,
            ),
            ("coxswain_node_gpus_allocatable", &[("node", "n1")], 8.0),
            ("coxswain_node_gpus_allocatable", &[("node", "n2")], 4.0),
            ("coxswain_node_gpus_allocated", &[("node", "n1")], 2.0),
            ("coxswain_node_gpus_allocated", &[("node", "n2")], 0.0),
            (
                "coxswain_node_gpu_milli_allocated",
                &[("node", "n2")],
                500.0,
            ),
            ("coxswain_cluster_gpu_fragmentation_ratio", &[], 3.0 / 9.0),
            ("coxswain_pods", &[("phase", "Running")], 2.0),
            ("coxswain_pods", &[("phase", "Succeeded")], 1.0),
            ("coxswain_pods", &[("phase", "Pending")], 3.0),
            ("coxswain_pods_unscheduled", &[], 3.0),
            ("coxswain_trainingjobs", &[("state", "Running")], 1.0),
            ("coxswain_trainingjobs", &[("state", "Pending")], 1.0),
            ("coxswain_trainingjobs", &[("state", "Failed")], 0.0),
            (
                "coxswain_pod_gpus",
                &[
                    ("namespace", "default"),
                    ("pod", "running"),
                    ("node", "n1"),
                    ("owner_kind", "Pod"),
                    ("owner", "running"),
                ],
                2.0,
            ),
            (
                "coxswain_pod_gpus",
                &[
                    ("namespace", "default"),
                    ("pod", "share"),
                    ("node", "n2"),
                    ("owner_kind", "Pod"),
                    ("owner", "share"),
                ],
                0.5,
            ),
        ],
    )
    .await;
    promtool_check(&text);
    assert!(
        !text.contains("pod=\"finished\""),
        "a finished pod holds no GPUs: {text}"
    );

    // A node that goes away loses its series; a pod that finishes frees its GPUs.
    nodes.delete("n3", &Default::default()).await.unwrap();
    let done = Patch::Merge(json!({"status": {"phase": "Failed"}}));
    pods.patch_status("running", &PatchParams::default(), &done)
        .await
        .unwrap();
    let text = until(
        &metrics,
        &[
            (
                "coxswain_nodes",
                &[("condition", "Ready"), ("status", "Unknown")],
                0.0,
            ),
            ("coxswain_node_gpus_allocated", &[("node", "n1")], 0.0),
            ("coxswain_pods", &[("phase", "Failed")], 1.0),
        ],
    )
    .await;
    assert_eq!(
        sample(&text, "coxswain_node_gpus_allocatable", &[("node", "n3")]),
        None,
        "{text}"
    );
    assert!(
        !text.contains("pod=\"running\""),
        "the failed pod's GPU series is gone: {text}"
    );

    shutdown.cancel();
    collector.await.unwrap();
}
