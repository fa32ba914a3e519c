//! The scheduler's VolumeBinding over the real API: a pod's claims constrain its node, and
//! its unbound claims are provisioned on the chosen node (selected-node) and bound before
//! the pod is.

mod scheduler_support;

use coxswain_control_plane::controllers::{ControllersConfig, volumes};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use scheduler_support::*;
use serde_json::{Value, json};

const DRIVER: &str = "csi.coxswain.dev";

async fn start() -> Cluster {
    let cluster = Cluster::start().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let guard = shutdown.clone().drop_guard();
    tokio::spawn(volumes::run(
        cluster.client.clone(),
        ControllersConfig::default(),
        shutdown,
    ));
    // The controller stops with the test's runtime; the guard is leaked on purpose.
    std::mem::forget(guard);
    cluster
}

async fn create<K>(api: Api<K>, value: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(
        &PostParams::default(),
        &serde_json::from_value(value).unwrap(),
    )
    .await
    .unwrap()
}

fn cluster_api<K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>>(
    cluster: &Cluster,
) -> Api<K> {
    Api::all(cluster.client.clone())
}

fn claims(cluster: &Cluster) -> Api<PersistentVolumeClaim> {
    Api::namespaced(cluster.client.clone(), "default")
}

async fn node(cluster: &Cluster, name: &str, drivers: &[&str]) {
    let ids: serde_json::Map<String, Value> = drivers
        .iter()
        .map(|d| (d.to_string(), json!(name)))
        .collect();
    create(
        cluster_api::<Node>(cluster),
        json!({
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name},
                "annotations": {volumes::CSI_NODE_ID: Value::Object(ids).to_string()},
            },
            "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"}},
        }),
    )
    .await;
}

fn pod_with_claim(name: &str, claim: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "1"}}}],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}],
        }
    })
}

fn claim(name: &str, class: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "resources": {"requests": {"storage": "1Gi"}},
        }
    })
}

fn class(name: &str, provisioner: &str, mode: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "provisioner": provisioner,
        "volumeBindingMode": mode,
    })
}

#[tokio::test]
async fn a_pod_whose_claim_is_missing_is_unschedulable_naming_the_claim() {
    let cluster = start().await;
    node(&cluster, "n1", &[DRIVER]).await;
    cluster.create(pod_with_claim("orphan", "nope")).await;
    cluster
        .wait_unschedulable("orphan", "persistentvolumeclaim \"nope\" not found")
        .await;
}

#[tokio::test]
async fn a_bound_claims_volume_pins_the_pod_to_its_node() {
    let cluster = start().await;
    node(&cluster, "n1", &[DRIVER]).await;
    node(&cluster, "n2", &[DRIVER]).await;
    create(
        cluster_api::<PersistentVolume>(&cluster),
        json!({
            "metadata": {"name": "pv-n2"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual",
                "csi": {"driver": DRIVER, "volumeHandle": "v"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]},
                ]}]}},
            }
        }),
    )
    .await;
    create(claims(&cluster), claim("data", "manual")).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), "default");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while claims
        .get("data")
        .await
        .unwrap()
        .spec
        .unwrap()
        .volume_name
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the claim never bound"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cluster.create(pod_with_claim("pinned", "data")).await;
    let pod = cluster.wait_bound("pinned").await;
    assert_eq!(node_of(&pod).as_deref(), Some("n2"));
}

#[tokio::test]
async fn an_unbound_immediate_claim_no_node_can_provision_is_unschedulable() {
    let cluster = start().await;
    node(&cluster, "n1", &[DRIVER]).await;
    create(
        cluster_api::<StorageClass>(&cluster),
        class("remote", "example.com/remote", "Immediate"),
    )
    .await;
    create(claims(&cluster), claim("far", "remote")).await;
    cluster.create(pod_with_claim("waits", "far")).await;
    cluster
        .wait_unschedulable("waits", "pod has unbound immediate PersistentVolumeClaims")
        .await;
}

#[tokio::test]
async fn a_first_consumer_claim_is_provisioned_on_a_node_running_the_driver_before_the_pod_binds() {
    let cluster = start().await;
    node(&cluster, "plain", &[]).await;
    node(&cluster, "local", &[DRIVER]).await;
    create(
        cluster_api::<StorageClass>(&cluster),
        class("fast", DRIVER, "WaitForFirstConsumer"),
    )
    .await;
    let created: PersistentVolumeClaim = create(claims(&cluster), claim("scratch", "fast")).await;
    cluster.create(pod_with_claim("trainer", "scratch")).await;

    // The scheduler picks the node that runs the driver and selects it for the claim.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), "default");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let selected = loop {
        let claim = claims.get("scratch").await.unwrap();
        let annotations = claim.metadata.annotations.unwrap_or_default();
        if let Some(node) = annotations.get(volumes::SELECTED_NODE) {
            break node.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no node selected");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(selected, "local");
    let pod = cluster.pods().get("trainer").await.unwrap();
    assert_eq!(node_of(&pod), None, "the pod waits for its claim to bind");

    // The node's provisioner makes the volume (what ReportProvisioning writes).
    let uid = created.metadata.uid.clone().unwrap();
    create(
        cluster_api::<PersistentVolume>(&cluster),
        json!({
            "metadata": {"name": format!("pvc-{uid}"),
                         "annotations": {volumes::PROVISIONED_BY: DRIVER}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "fast",
                "persistentVolumeReclaimPolicy": "Delete",
                "claimRef": {"namespace": "default", "name": "scratch", "uid": uid},
                "csi": {"driver": DRIVER, "volumeHandle": "vol-1"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["local"]},
                ]}]}},
            }
        }),
    )
    .await;
    let pod = cluster.wait_bound("trainer").await;
    assert_eq!(node_of(&pod).as_deref(), Some("local"));
    let claim = claims.get("scratch").await.unwrap();
    assert_eq!(
        claim.status.unwrap().phase.as_deref(),
        Some("Bound"),
        "the claim bound before the pod"
    );
}

#[tokio::test]
async fn a_claim_never_provisioned_sends_the_pod_back_to_the_queue_with_the_reason() {
    let cluster = Cluster::start_with(coxswain_control_plane::scheduler::runner::RunnerConfig {
        volume_bind_timeout: Some(std::time::Duration::from_millis(300)),
        ..Default::default()
    })
    .await;
    node(&cluster, "local", &[DRIVER]).await;
    create(
        cluster_api::<StorageClass>(&cluster),
        class("fast", DRIVER, "WaitForFirstConsumer"),
    )
    .await;
    create(claims(&cluster), claim("stuck", "fast")).await;
    cluster.create(pod_with_claim("waiting", "stuck")).await;

    // No agent provisions: the bind times out and the pod is retried, never bound.
    let event = wait_event(
        &cluster.client,
        "Pod",
        "waiting",
        "FailedScheduling",
        "not bound within",
        |_| true,
    )
    .await;
    assert!(event.message.unwrap().contains("stuck"), "names the claim");
    let pod = cluster.pods().get("waiting").await.unwrap();
    assert_eq!(node_of(&pod), None);
}
