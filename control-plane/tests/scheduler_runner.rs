//! The scheduler run against the API: an in-process API server over the embedded store,
//! the runner spawned on it, and nodes, GPU slices, pods and pod groups written through a
//! kube client as the agent and users would.

mod scheduler_support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coxswain_api::coxswain::{PodGroup, PodGroupSpec};
use coxswain_api::k8s::Pod;
use coxswain_control_plane::scheduler::Binding;
use coxswain_control_plane::scheduler::runner::RunnerConfig;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use scheduler_support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_gpu_pods_get_island_aligned_devices() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 8, false).await;
    cluster.add_node("node-b", 8, false).await;
    for i in 0..4 {
        cluster
            .create_pod(&format!("train-{i}"), "nvidia.com/gpu", 4, None)
            .await;
    }
    let mut taken = BTreeSet::new();
    for i in 0..4 {
        let pod = cluster.wait_bound(&format!("train-{i}")).await;
        let node = node_of(&pod).unwrap();
        let devs = devices(&pod);
        assert_eq!(devs.len(), 4, "{devs:?}");
        let islands: BTreeSet<(String, u32)> = devs.iter().map(|(id, _)| island_of(id)).collect();
        assert_eq!(islands.len(), 1, "one NVLink island: {devs:?}");
        assert_eq!(
            islands.first().unwrap().0,
            node,
            "devices of the bound node"
        );
        for (id, milli) in devs {
            assert_eq!(milli, 1000);
            assert!(taken.insert(id.clone()), "{id} given twice");
        }
        let scheduled = cluster
            .wait_for(&format!("train-{i}"), "PodScheduled=True", |p| {
                scheduled_condition(p).is_some_and(|(s, _)| s == "True")
            })
            .await;
        assert!(node_of(&scheduled).is_some());
    }
    assert_eq!(taken.len(), 16);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_shares_pack_a_device_without_exceeding_1000_milli() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 2, false).await;
    for (name, milli) in [("s0", 600), ("s1", 600), ("s2", 400), ("s3", 400)] {
        cluster
            .create_pod(name, "coxswain.dev/gpu-milli", milli, None)
            .await;
        cluster.wait_bound(name).await;
    }
    let mut used: HashMap<String, u32> = HashMap::new();
    for name in ["s0", "s1", "s2", "s3"] {
        let pod = cluster.pods().get(name).await.unwrap();
        let devs = devices(&pod);
        assert_eq!(devs.len(), 1, "a share is of one device: {devs:?}");
        *used.entry(devs[0].0.clone()).or_default() += devs[0].1;
    }
    assert_eq!(used.len(), 2, "{used:?}");
    assert!(used.values().all(|&m| m == 1000), "{used:?}");
    // Both devices are full: one more share fits nowhere.
    cluster
        .create_pod("s4", "coxswain.dev/gpu-milli", 100, None)
        .await;
    let pod = cluster
        .wait_unschedulable("s4", "0/1 nodes are available")
        .await;
    assert_eq!(node_of(&pod), None);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gang_binds_only_when_all_members_exist() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 8, false).await;
    cluster.add_node("node-b", 8, false).await;
    let groups: Api<PodGroup> = Api::namespaced(cluster.client.clone(), "default");
    let group = PodGroup::new(
        "gang",
        PodGroupSpec {
            min_member: 3,
            ..Default::default()
        },
    );
    groups.create(&PostParams::default(), &group).await.unwrap();
    for i in 0..2 {
        cluster
            .create_pod(&format!("m{i}"), "nvidia.com/gpu", 4, Some("gang"))
            .await;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut waiting = false;
        for i in 0..2 {
            let pod = cluster.pods().get(&format!("m{i}")).await.unwrap();
            assert_eq!(
                node_of(&pod),
                None,
                "a member bound before the gang was complete"
            );
            waiting |= scheduled_condition(&pod)
                .is_some_and(|(s, m)| s == "False" && m.contains("has 2 of 3 pods"));
        }
        if waiting {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gang never reported waiting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster
        .create_pod("m2", "nvidia.com/gpu", 4, Some("gang"))
        .await;
    let mut taken = BTreeSet::new();
    for i in 0..3 {
        let pod = cluster.wait_bound(&format!("m{i}")).await;
        for (id, _) in devices(&pod) {
            assert!(taken.insert(id));
        }
    }
    assert_eq!(taken.len(), 12);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfit_pod_says_why_and_binds_when_a_node_joins() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 8, false).await;
    cluster.add_node("node-b", 8, true).await;
    cluster.add_node("node-c", 8, false).await;
    for name in ["big-a", "big-c"] {
        cluster.create_pod(name, "nvidia.com/gpu", 8, None).await;
        cluster.wait_bound(name).await;
    }
    cluster.create_pod("late", "nvidia.com/gpu", 4, None).await;
    let pod = cluster
        .wait_unschedulable(
            "late",
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient nvidia.com/gpu.",
        )
        .await;
    assert_eq!(node_of(&pod), None);
    let condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .unwrap();
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    cluster.add_node("node-d", 8, false).await;
    let pod = cluster.wait_bound("late").await;
    assert_eq!(node_of(&pod).as_deref(), Some("node-d"));
    assert!(
        devices(&pod)
            .iter()
            .all(|(id, _)| island_of(id).0 == "node-d")
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_that_races_a_change_is_retried_on_the_new_version() {
    let client_slot: Arc<std::sync::OnceLock<kube::Client>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let handle = tokio::runtime::Handle::current();
    let hook = {
        let (slot, calls) = (client_slot.clone(), calls.clone());
        Arc::new(move |binding: &Binding| {
            if calls.fetch_add(1, Ordering::SeqCst) > 0 {
                return;
            }
            // Someone else writes the pod between the decision and the bind.
            let pods: Api<Pod> = Api::namespaced(slot.get().unwrap().clone(), "default");
            let name = binding.pod.split_once('/').unwrap().1.to_string();
            let patch = json!({"metadata": {"labels": {"touched": "yes"}}});
            handle
                .block_on(pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)))
                .unwrap();
        })
    };
    let cluster = Cluster::start_with(RunnerConfig {
        before_bind: Some(hook),
        ..RunnerConfig::default()
    })
    .await;
    assert!(client_slot.set(cluster.client.clone()).is_ok());
    cluster.add_node("node-a", 8, false).await;
    cluster.create_pod("racer", "nvidia.com/gpu", 2, None).await;
    let pod = cluster.wait_bound("racer").await;
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "the first bind conflicted and was retried"
    );
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("touched").map(String::as_str),
        Some("yes"),
        "the bind was written on top of the concurrent change, not over it"
    );
    assert_eq!(devices(&pod).len(), 2);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pods_gpus_go_to_the_next_pod() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 8, false).await;
    cluster.create_pod("first", "nvidia.com/gpu", 8, None).await;
    let first = cluster.wait_bound("first").await;
    cluster
        .create_pod("second", "nvidia.com/gpu", 8, None)
        .await;
    cluster
        .wait_unschedulable("second", "Insufficient nvidia.com/gpu")
        .await;
    let delete = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    cluster.pods().delete("first", &delete).await.unwrap();
    let second = cluster.wait_bound("second").await;
    let ids = |p: &Pod| -> BTreeSet<String> { devices(p).into_iter().map(|d| d.0).collect() };
    assert_eq!(ids(&second), ids(&first));
    let scheduled = cluster
        .wait_for("second", "PodScheduled=True", |p| {
            scheduled_condition(p).is_some_and(|(s, m)| s == "True" && m.is_empty())
        })
        .await;
    assert!(node_of(&scheduled).is_some());
    cluster.stop().await;
}
