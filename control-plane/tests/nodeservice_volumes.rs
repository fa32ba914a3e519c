//! The node service's volume side over its real transport: what a node learns about the
//! claims and volumes of its pods.

mod nodeservice_support;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use nodeservice_support::*;

#[tokio::test]
async fn a_pod_event_carries_the_pods_claims_and_their_bound_volumes() {
    let cluster = start().await;
    register(&cluster, "n1", "10.0.0.1").await;
    let volumes: Api<PersistentVolume> = Api::all(cluster.client.clone());
    volumes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "pv-data"},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "csi": {"driver": "csi.coxswain.dev", "volumeHandle": "vol-1"},
                    "claimRef": {"namespace": "default", "name": "data"},
                }
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), "default");
    for (name, volume) in [("data", Some("pv-data")), ("pending", None)] {
        let mut spec = json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        });
        if let Some(volume) = volume {
            spec["volumeName"] = json!(volume);
        }
        claims
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap(),
            )
            .await
            .unwrap();
    }
    create_pod(
        &cluster.client,
        json!({
            "metadata": {"name": "trainer", "namespace": "default"},
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [
                    {"name": "a", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "b", "persistentVolumeClaim": {"claimName": "pending"}},
                    {"name": "c", "persistentVolumeClaim": {"claimName": "missing"}},
                ],
            }
        }),
    )
    .await;

    let mut stream = cluster
        .grpc
        .clone()
        .watch_pods(pb::WatchPodsRequest {
            node_name: "n1".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let (kind, _, event) = next_pod_event(&mut stream).await;
    assert_eq!(kind, PodEventType::Added);
    let names: BTreeSet<String> = event
        .persistent_volume_claims
        .iter()
        .map(|c| serde_json::from_slice::<PersistentVolumeClaim>(c).unwrap())
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["data".to_string(), "pending".to_string()]),
        "both existing claims, the missing one left out"
    );
    assert_eq!(
        event.persistent_volumes.len(),
        1,
        "only the bound claim has a volume"
    );
    let volume: PersistentVolume = serde_json::from_slice(&event.persistent_volumes[0]).unwrap();
    assert_eq!(volume.metadata.name.as_deref(), Some("pv-data"));
    let csi = volume.spec.unwrap().csi.unwrap();
    assert_eq!(
        (csi.driver.as_str(), csi.volume_handle.as_str()),
        ("csi.coxswain.dev", "vol-1")
    );
    let (kind, _, _) = next_pod_event(&mut stream).await;
    assert_eq!(kind, PodEventType::Synced);

    // The pending claim binds later: the pod is sent again, now with both volumes.
    volumes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "pv-late"},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "csi": {"driver": "csi.coxswain.dev", "volumeHandle": "vol-2"},
                    "claimRef": {"namespace": "default", "name": "pending"},
                }
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    claims
        .patch(
            "pending",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"volumeName": "pv-late"}})),
        )
        .await
        .unwrap();
    let (kind, pod, event) = next_pod_event(&mut stream).await;
    assert_eq!(kind, PodEventType::Modified);
    assert_eq!(pod.unwrap().metadata.name.as_deref(), Some("trainer"));
    let handles: BTreeSet<String> = event
        .persistent_volumes
        .iter()
        .map(|v| serde_json::from_slice::<PersistentVolume>(v).unwrap())
        .map(|v| v.spec.unwrap().csi.unwrap().volume_handle)
        .collect();
    assert_eq!(
        handles,
        BTreeSet::from(["vol-1".to_string(), "vol-2".to_string()])
    );
}
