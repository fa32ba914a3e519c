//! Scheduling policy through the API with the runner: PriorityClasses resolved at
//! admission and used for order and preemption (with `status.nominatedNodeName` on the
//! preemptor), and Queue quotas with cohort borrowing enforced for real.

mod scheduler_support;

use coxswain_api::coxswain::{PodGroup, Queue};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, PostParams};
use scheduler_support::*;
use serde_json::{Value, json};

fn gpu_pod(name: &str, gpus: u32, extra_spec: Value, labels: Value) -> Value {
    let mut spec = json!({
        "containers": [{"name": "c", "image": "busybox", "resources": {
            "requests": {"cpu": "1", "nvidia.com/gpu": gpus.to_string()},
            "limits": {"nvidia.com/gpu": gpus.to_string()}}}]
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"metadata": {"name": name, "labels": labels}, "spec": spec})
}

async fn add_class(client: &kube::Client, name: &str, value: i32, global_default: bool) {
    let classes: Api<PriorityClass> = Api::all(client.clone());
    let class: PriorityClass = serde_json::from_value(json!({
        "metadata": {"name": name}, "value": value, "globalDefault": global_default
    }))
    .unwrap();
    classes
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_classes_are_served_resolved_and_enforced_at_admission() {
    let cluster = Cluster::start().await;
    let classes: Api<PriorityClass> = Api::all(cluster.client.clone());
    let system = classes.get("system-node-critical").await.unwrap();
    assert_eq!(system.value, Some(2_000_001_000));
    let system = classes.get("system-cluster-critical").await.unwrap();
    assert_eq!(system.value, Some(2_000_000_000));
    add_class(&cluster.client, "batch", 50, true).await;
    add_class(&cluster.client, "prod", 1000, false).await;

    let pod = cluster
        .create(gpu_pod(
            "named",
            0,
            json!({"priorityClassName": "prod"}),
            json!({}),
        ))
        .await;
    let spec = pod.spec.unwrap();
    assert_eq!(spec.priority, Some(1000));
    assert_eq!(
        spec.preemption_policy.as_deref(),
        Some("PreemptLowerPriority")
    );
    let pod = cluster
        .create(gpu_pod("defaulted", 0, json!({}), json!({})))
        .await;
    let spec = pod.spec.unwrap();
    assert_eq!(spec.priority, Some(50));
    assert_eq!(spec.priority_class_name.as_deref(), Some("batch"));

    let unknown: coxswain_api::k8s::Pod = serde_json::from_value(gpu_pod(
        "unknown",
        0,
        json!({"priorityClassName": "gold"}),
        json!({}),
    ))
    .unwrap();
    match cluster
        .pods()
        .create(&PostParams::default(), &unknown)
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert!(
                s.message.contains("spec.priorityClassName") && s.message.contains("gold"),
                "{}",
                s.message
            );
        }
        other => panic!("an unknown class must be refused: {other:?}"),
    }
    let forged: coxswain_api::k8s::Pod = serde_json::from_value(gpu_pod(
        "forged",
        0,
        json!({"priorityClassName": "batch", "priority": 2_000_000_000}),
        json!({}),
    ))
    .unwrap();
    match cluster.pods().create(&PostParams::default(), &forged).await {
        Err(kube::Error::Api(s)) => assert!(s.message.contains("spec.priority"), "{}", s.message),
        other => panic!("a priority contradicting the class must be refused: {other:?}"),
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preemptor_is_nominated_and_a_never_preempting_pod_waits() {
    let cluster = Cluster::start().await;
    add_class(&cluster.client, "low", 10, false).await;
    add_class(&cluster.client, "high", 1000, false).await;
    let classes: Api<PriorityClass> = Api::all(cluster.client.clone());
    let polite: PriorityClass = serde_json::from_value(json!({
        "metadata": {"name": "polite"}, "value": 5000, "preemptionPolicy": "Never"
    }))
    .unwrap();
    classes
        .create(&PostParams::default(), &polite)
        .await
        .unwrap();
    cluster.add_node("node-a", 8, false).await;
    // Grace 0: no agent runs here to finish a graceful deletion of the bound victim.
    let class = |c: &str| json!({"priorityClassName": c, "terminationGracePeriodSeconds": 0});
    cluster
        .create(gpu_pod("victim", 8, class("low"), json!({})))
        .await;
    cluster.wait_bound("victim").await;

    // Priority 5000 but preemptionPolicy Never: it waits and evicts nobody.
    cluster
        .create(gpu_pod("waiter", 8, class("polite"), json!({})))
        .await;
    cluster
        .wait_unschedulable("waiter", "Insufficient nvidia.com/gpu")
        .await;
    assert!(cluster.pods().get_opt("victim").await.unwrap().is_some());
    cluster
        .pods()
        .delete("waiter", &DeleteParams::default())
        .await
        .unwrap();

    cluster
        .create(gpu_pod("preemptor", 8, class("high"), json!({})))
        .await;
    // Nominated to the node it preempted on, and bound there once the victim is gone
    // (the nomination names that node, so it stays).
    cluster
        .wait_for("preemptor", "nominated", |p| {
            p.status
                .as_ref()
                .and_then(|s| s.nominated_node_name.as_deref())
                == Some("node-a")
        })
        .await;
    let bound = cluster.wait_bound("preemptor").await;
    assert_eq!(node_of(&bound).as_deref(), Some("node-a"));
    assert!(cluster.pods().get_opt("victim").await.unwrap().is_none());
    cluster.stop().await;
}

async fn add_queue(client: &kube::Client, value: Value) {
    let queues: Api<Queue> = Api::all(client.clone());
    let queue: Queue = serde_json::from_value(value).unwrap();
    queues.create(&PostParams::default(), &queue).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_quotas_hold_pods_and_cohorts_lend_idle_quota() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 8, false).await;
    cluster.add_node("node-b", 8, false).await;
    let quota = |gpus: &str| json!({"nvidia.com/gpu": {"nominal": gpus}});
    add_queue(
        &cluster.client,
        json!({"apiVersion": "coxswain.dev/v1alpha1", "kind": "Queue",
            "metadata": {"name": "research"},
            "spec": {"quotas": quota("4"), "cohort": "lab"}}),
    )
    .await;
    let in_queue = |q: &str| json!({"scheduling.coxswain.dev/queue": q});
    cluster
        .create(gpu_pod("r1", 4, json!({}), in_queue("research")))
        .await;
    cluster.wait_bound("r1").await;
    // The cluster has 12 idle GPUs, but the queue's 4 are used and its cohort lends none.
    cluster
        .create(gpu_pod("r2", 4, json!({}), in_queue("research")))
        .await;
    cluster
        .wait_unschedulable(
            "r2",
            "queue research: nvidia.com/gpu quota exceeded (4 in use + 4 requested > 4)",
        )
        .await;
    // A sibling in the cohort with idle quota: research borrows it.
    add_queue(
        &cluster.client,
        json!({"apiVersion": "coxswain.dev/v1alpha1", "kind": "Queue",
            "metadata": {"name": "prod"},
            "spec": {"quotas": quota("8"), "cohort": "lab"}}),
    )
    .await;
    cluster.wait_bound("r2").await;
    // A gang over its queue's quota binds no member: the first is reserved, the second
    // crosses the quota and the gang releases both.
    add_queue(
        &cluster.client,
        json!({"apiVersion": "coxswain.dev/v1alpha1", "kind": "Queue",
            "metadata": {"name": "small"}, "spec": {"quotas": quota("4")}}),
    )
    .await;
    let groups: Api<PodGroup> = Api::namespaced(cluster.client.clone(), "default");
    let group = |name: &str, queue: &str| -> PodGroup {
        serde_json::from_value(json!({
            "apiVersion": "coxswain.dev/v1alpha1", "kind": "PodGroup",
            "metadata": {"name": name},
            "spec": {"minMember": 2, "queue": queue}
        }))
        .unwrap()
    };
    groups
        .create(&PostParams::default(), &group("big", "small"))
        .await
        .unwrap();
    let member = |g: &str| json!({PodGroup::POD_LABEL: g});
    for name in ["b0", "b1"] {
        cluster
            .create(gpu_pod(name, 4, json!({}), member("big")))
            .await;
    }
    // Whichever member is tried second crosses the quota; the gang's event says so.
    wait_event(
        &cluster.client,
        "PodGroup",
        "big",
        "Unschedulable",
        "1/2 members placeable: 0/2 nodes are available: queue small: nvidia.com/gpu quota \
         exceeded (4 in use + 4 requested > 4).",
        |_| true,
    )
    .await;
    for name in ["b0", "b1"] {
        let pod = cluster.pods().get(name).await.unwrap();
        assert_eq!(node_of(&pod), None, "{name} bound over its queue's quota");
    }
    // A gang of `prod` (its PodGroup's spec.queue) within prod's quota binds whole.
    groups
        .create(&PostParams::default(), &group("train", "prod"))
        .await
        .unwrap();
    for name in ["t0", "t1"] {
        cluster
            .create(gpu_pod(name, 4, json!({}), member("train")))
            .await;
    }
    cluster.wait_bound("t0").await;
    cluster.wait_bound("t1").await;
    for name in ["b0", "b1"] {
        let pod = cluster.pods().get(name).await.unwrap();
        assert_eq!(node_of(&pod), None);
    }
    cluster.stop().await;
}
