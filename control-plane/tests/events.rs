//! The event recorder writes core/v1 Events through the API and aggregates repeats.

use std::sync::Arc;

use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::client::in_process;
use coxswain_control_plane::events::{EventRecorder, EventType};
use coxswain_control_plane::store::EmbeddedStore;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use tokio_util::sync::CancellationToken;

async fn cluster() -> (tempfile::TempDir, kube::Client) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let server = ApiServer::new(store, CancellationToken::new())
        .await
        .unwrap();
    (dir, in_process(&server))
}

async fn events_of(client: &kube::Client, namespace: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().fields(&format!("involvedObject.name={name}"));
    api.list(&params).await.unwrap().items
}

#[tokio::test]
async fn repeats_bump_one_record_even_across_recorder_restarts() {
    let (_dir, client) = cluster().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "trainer-0"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();

    let recorder = EventRecorder::new(client.clone(), "scheduler");
    let message = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.";
    recorder
        .record(
            &kube::Resource::object_ref(&pod, &()),
            EventType::Warning,
            "FailedScheduling",
            message,
        )
        .await
        .unwrap();
    recorder
        .publish(&pod, EventType::Warning, "FailedScheduling", message)
        .await;
    // A restarted component has no memory of what it wrote, yet bumps the same record.
    EventRecorder::new(client.clone(), "scheduler")
        .publish(&pod, EventType::Warning, "FailedScheduling", message)
        .await;
    recorder
        .publish(&pod, EventType::Normal, "Scheduled", "assigned to node-a")
        .await;

    let mut events = events_of(&client, "default", "trainer-0").await;
    events.sort_by_key(|event| event.reason.clone());
    assert_eq!(events.len(), 2, "{events:#?}");
    let failed = &events[0];
    assert_eq!(failed.reason.as_deref(), Some("FailedScheduling"));
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert_eq!(failed.count, Some(3));
    assert_eq!(failed.message.as_deref(), Some(message));
    assert_eq!(failed.involved_object.uid, pod.metadata.uid);
    assert_eq!(failed.involved_object.kind.as_deref(), Some("Pod"));
    assert_eq!(
        failed.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("scheduler")
    );
    assert!(failed.last_timestamp >= failed.first_timestamp);
    assert_eq!(events[1].count, Some(1));
}

#[tokio::test]
async fn a_deleted_record_is_written_again_and_cluster_objects_use_default() {
    let (_dir, client) = cluster().await;
    let node: Node =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "gpu-1"}})).unwrap();
    let node = Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let recorder = EventRecorder::new(client.clone(), "coxswain-agent").with_host("gpu-1");
    recorder
        .publish(&node, EventType::Warning, "GPUUnhealthy", "GPU-1 XID 79")
        .await;
    let events = events_of(&client, "default", "gpu-1").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].source.as_ref().and_then(|s| s.host.as_deref()),
        Some("gpu-1")
    );

    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let name = events[0].metadata.name.clone().unwrap();
    api.delete(&name, &Default::default()).await.unwrap();
    recorder
        .publish(&node, EventType::Warning, "GPUUnhealthy", "GPU-1 XID 79")
        .await;
    let events = events_of(&client, "default", "gpu-1").await;
    assert_eq!(events.len(), 1, "the recorder writes the event again");
    assert_eq!(events[0].count, Some(1));
}
