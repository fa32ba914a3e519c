//! The DaemonSet controller over the in-process API: one pod per matching node.

mod workloads_support;

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use workloads_support::{event_reasons, fast_config, live_pods, obj, set_phase, start, wait_for};

fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
    obj(
        serde_json::json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}),
    )
}

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .unwrap()
        .node_name
        .clone()
        .unwrap_or_default()
}

async fn nodes_with_pods(client: &kube::Client, want: usize) -> BTreeSet<String> {
    wait_for("daemon pods", || async {
        let pods = live_pods(client, "app=agent").await;
        let nodes: BTreeSet<String> = pods.iter().map(node_of).collect();
        (pods.len() == want && nodes.len() == want).then_some(nodes)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_matching_node_and_new_nodes_get_one() {
    let cluster = start(fast_config()).await;
    let client = &cluster.client;
    let nodes: Api<Node> = Api::all(client.clone());
    let gpu = serde_json::json!({"gpu": "true"});
    for name in ["n1", "n2", "n3"] {
        nodes
            .create(
                &PostParams::default(),
                &node(name, gpu.clone(), serde_json::json!([])),
            )
            .await
            .unwrap();
    }
    nodes
        .create(
            &PostParams::default(),
            &node("cpu-only", serde_json::json!({}), serde_json::json!([])),
        )
        .await
        .unwrap();
    nodes
        .create(
            &PostParams::default(),
            &node(
                "tainted",
                gpu.clone(),
                serde_json::json!([{"key": "maintenance", "effect": "NoSchedule"}]),
            ),
        )
        .await
        .unwrap();
    let ds: DaemonSet = obj(serde_json::json!({
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"nodeSelector": {"gpu": "true"},
                                  "containers": [{"name": "c", "image": "agent"}]}}
        }
    }));
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    daemonsets
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    let placed = nodes_with_pods(client, 3).await;
    assert_eq!(
        placed,
        BTreeSet::from(["n1".into(), "n2".into(), "n3".into()])
    );
    event_reasons(client, "DaemonSet", "agent", "SuccessfulCreate").await;
    for pod in live_pods(client, "app=agent").await {
        let tolerations = pod.spec.as_ref().unwrap().tolerations.clone().unwrap();
        assert!(
            tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready"))
        );
        set_phase(client, &pod, "Running", 0).await;
    }
    let status = wait_for("status", || async {
        let s = daemonsets.get("agent").await.unwrap().status?;
        (s.number_ready == 3).then_some(s)
    })
    .await;
    assert_eq!(
        (
            status.desired_number_scheduled,
            status.current_number_scheduled
        ),
        (3, 3)
    );
    assert_eq!(status.updated_number_scheduled, Some(3));

    // A new matching node gets a pod; a new node that does not match gets none.
    nodes
        .create(
            &PostParams::default(),
            &node("n4", gpu, serde_json::json!([])),
        )
        .await
        .unwrap();
    nodes
        .create(
            &PostParams::default(),
            &node(
                "cpu-2",
                serde_json::json!({"gpu": "false"}),
                serde_json::json!([]),
            ),
        )
        .await
        .unwrap();
    let placed = nodes_with_pods(client, 4).await;
    assert!(placed.contains("n4"));
    assert!(
        !placed.contains("cpu-only") && !placed.contains("cpu-2") && !placed.contains("tainted")
    );
    wait_for("desired 4", || async {
        let s = daemonsets.get("agent").await.unwrap().status?;
        (s.desired_number_scheduled == 4).then_some(())
    })
    .await;
}
