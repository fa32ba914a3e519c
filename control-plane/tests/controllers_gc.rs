//! The garbage collector over the in-process API: dependents whose owner is gone are
//! deleted (background), `Foreground` deletion deletes dependents before the owner, and
//! `Orphan` deletion keeps them without the reference.

mod controllers_support;

use controllers_support::{fast_config, start, wait_for};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

fn pod_owned_by(name: &str, owner: &str, uid: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid,
                "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap()
}

async fn owner(maps: &Api<ConfigMap>, name: &str) -> String {
    let map: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    let created = maps.create(&PostParams::default(), &map).await.unwrap();
    created.metadata.uid.unwrap()
}

#[tokio::test]
async fn a_pod_whose_owner_does_not_exist_is_collected() {
    let cluster = start(fast_config()).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let uid = owner(&maps, "owner").await;
    let pp = PostParams::default();
    pods.create(&pp, &pod_owned_by("kept", "owner", &uid))
        .await
        .unwrap();
    // Same owner name, but a uid no object has: an earlier owner that is gone.
    pods.create(&pp, &pod_owned_by("orphan", "owner", "no-such-uid"))
        .await
        .unwrap();
    wait_for("the orphan to be collected", || async {
        pods.get_opt("orphan")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        pods.get_opt("kept").await.unwrap().is_some(),
        "a pod whose owner exists stays"
    );
    // Deleting the owner (background) takes its dependent with it.
    maps.delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the dependent to be collected", || async {
        pods.get_opt("kept").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn foreground_deletion_removes_dependents_then_the_owner() {
    let cluster = start(fast_config()).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let uid = owner(&maps, "owner").await;
    pods.create(&PostParams::default(), &pod_owned_by("dep", "owner", &uid))
        .await
        .unwrap();
    maps.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_for("the owner to be removed", || async {
        maps.get_opt("owner").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(
        pods.get_opt("dep").await.unwrap().is_none(),
        "the dependent went before its owner"
    );
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_without_the_reference() {
    let cluster = start(fast_config()).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let uid = owner(&maps, "owner").await;
    pods.create(&PostParams::default(), &pod_owned_by("dep", "owner", &uid))
        .await
        .unwrap();
    maps.delete("owner", &DeleteParams::orphan()).await.unwrap();
    wait_for("the owner to be removed", || async {
        maps.get_opt("owner").await.unwrap().is_none().then_some(())
    })
    .await;
    let dep = pods.get("dep").await.unwrap();
    assert!(
        dep.metadata.owner_references.unwrap_or_default().is_empty(),
        "the reference to the deleted owner was removed"
    );
}
