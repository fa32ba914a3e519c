//! Deployments and ReplicaSets over the in-process API; the test plays the kubelet, making
//! every new pod Running and Ready, and checks availability at every step of a rollout.

mod workloads_support;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use workloads_support::{
    event_reasons, fast_config, is_ready, live_pods, obj, phase, set_phase, start, wait_for,
};

fn deployment(name: &str, replicas: i32, image: &str, strategy: serde_json::Value) -> Deployment {
    obj(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}
            }
        }
    }))
}

fn image_of(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

/// Marks every pending pod Running and Ready; returns the live pods.
async fn kubelet_step(client: &kube::Client, labels: &str) -> Vec<Pod> {
    let mut pods = live_pods(client, labels).await;
    for pod in pods.iter_mut().filter(|p| phase(p) == "Pending") {
        set_phase(client, pod, "Running", 0).await;
    }
    live_pods(client, labels).await
}

async fn set_image(deploys: &Api<Deployment>, name: &str, image: &str) {
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
    deploys
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Plays the kubelet until all `replicas` pods run `image` and the Deployment says so,
/// asserting after every step that at least `min_ready` pods are ready (once `armed`).
async fn roll(client: &kube::Client, name: &str, replicas: usize, image: &str, min_ready: usize) {
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let labels = format!("app={name}");
    let mut steps = 0;
    wait_for("the rollout to finish", || {
        steps += 1;
        let labels = labels.clone();
        let deploys = deploys.clone();
        async move {
            let pods = kubelet_step(client, &labels).await;
            let ready = pods.iter().filter(|p| is_ready(p)).count();
            assert!(
                ready >= min_ready,
                "only {ready} pods ready during the rollout to {image} (at least {min_ready} required)"
            );
            let status = deploys.get(name).await.unwrap().status.unwrap_or_default();
            let done = pods.len() == replicas
                && pods.iter().all(|p| image_of(p) == image && is_ready(p))
                && status.updated_replicas == Some(replicas as i32)
                && status.available_replicas == Some(replicas as i32);
            done.then_some(())
        }
    })
    .await;
    assert!(steps > 1);
}

fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_keeps_min_available_and_rollback_reuses_the_old_replicaset() {
    let cluster = start(fast_config()).await;
    let client = &cluster.client;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let strategy = serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    deploys
        .create(
            &PostParams::default(),
            &deployment("web", 4, "web:v1", strategy),
        )
        .await
        .unwrap();
    roll(client, "web", 4, "web:v1", 0).await;
    let v1 = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(v1.len(), 1);
    let v1 = v1[0].clone();
    let hash = v1.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        v1.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(revision(&v1.metadata), "1");
    for pod in live_pods(client, "app=web").await {
        assert_eq!(
            pod.metadata.labels.as_ref().unwrap()["pod-template-hash"],
            hash
        );
        assert!(
            pod.metadata
                .name
                .unwrap()
                .starts_with(&format!("web-{hash}-"))
        );
    }

    // v1 -> v2: never fewer than 4 - maxUnavailable ready pods.
    set_image(&deploys, "web", "web:v2").await;
    roll(client, "web", 4, "web:v2", 3).await;
    let all = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 2);
    let v2 = all
        .iter()
        .find(|rs| rs.metadata.uid != v1.metadata.uid)
        .unwrap();
    assert_eq!(revision(&v2.metadata), "2");
    let old = all
        .iter()
        .find(|rs| rs.metadata.uid == v1.metadata.uid)
        .unwrap();
    assert_eq!(
        old.spec.replicas,
        Some(0),
        "the old ReplicaSet is scaled to zero, kept for rollback"
    );
    let d = wait_for("the Progressing condition to say complete", || async {
        let d = deploys.get("web").await.unwrap();
        let conditions = d.status.clone()?.conditions?;
        let reason = |t: &str| {
            conditions
                .iter()
                .find(|c| c.type_.as_deref() == Some(t))
                .and_then(|c| c.reason.clone())
        };
        (reason("Progressing").as_deref() == Some("NewReplicaSetAvailable"))
            .then_some((d, reason("Available")))
    })
    .await;
    assert_eq!(revision(&d.0.metadata), "2");
    assert_eq!(d.1.as_deref(), Some("MinimumReplicasAvailable"));

    // Rollback: the v1 template again scales the v1 ReplicaSet back up, as revision 3.
    set_image(&deploys, "web", "web:v1").await;
    roll(client, "web", 4, "web:v1", 3).await;
    let all = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 2, "no third ReplicaSet");
    let back = all
        .iter()
        .find(|rs| rs.metadata.uid == v1.metadata.uid)
        .unwrap();
    assert_eq!(back.spec.replicas, Some(4));
    assert_eq!(revision(&back.metadata), "3");
    assert_eq!(revision(&deploys.get("web").await.unwrap().metadata), "3");
    event_reasons(client, "Deployment", "web", "ScalingReplicaSet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let cluster = start(fast_config()).await;
    let client = &cluster.client;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deploys
        .create(
            &PostParams::default(),
            &deployment("db", 2, "db:v1", serde_json::json!({"type": "Recreate"})),
        )
        .await
        .unwrap();
    roll(client, "db", 2, "db:v1", 0).await;
    set_image(&deploys, "db", "db:v2").await;
    wait_for("the recreate to finish", || async {
        let pods = kubelet_step(client, "app=db").await;
        let images: Vec<String> = pods.iter().map(image_of).collect();
        assert!(
            !(images.contains(&"db:v1".to_string()) && images.contains(&"db:v2".to_string())),
            "old and new pods at once: {images:?}"
        );
        (pods.len() == 2 && pods.iter().all(|p| image_of(p) == "db:v2" && is_ready(p)))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_replaces_deleted_pods_and_scales_down_unready_first() {
    let cluster = start(fast_config()).await;
    let client = &cluster.client;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs: ReplicaSet = obj(serde_json::json!({
        "metadata": {"name": "rs"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "rs"}},
                 "template": {"metadata": {"labels": {"app": "rs"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }));
    rss.create(&PostParams::default(), &rs).await.unwrap();
    let pods = wait_for("3 pods", || async {
        let pods = live_pods(client, "app=rs").await;
        (pods.len() == 3).then_some(pods)
    })
    .await;
    // Two become ready; one is deleted and replaced.
    set_phase(client, &pods[0], "Running", 0).await;
    set_phase(client, &pods[1], "Running", 0).await;
    Api::<Pod>::namespaced(client.clone(), "default")
        .delete(pods[2].metadata.name.as_ref().unwrap(), &Default::default())
        .await
        .unwrap();
    let deleted = pods[2].metadata.uid.clone();
    wait_for("a replacement", || async {
        let now = live_pods(client, "app=rs").await;
        (now.len() == 3 && now.iter().all(|p| p.metadata.uid != deleted)).then_some(())
    })
    .await;
    rss.patch(
        "rs",
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    let left = wait_for("scale down to 2", || async {
        let pods = live_pods(client, "app=rs").await;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    assert!(left.iter().all(is_ready), "the unready pod went first");
    let status = wait_for("status", || async {
        let s = rss.get("rs").await.unwrap().status?;
        (s.replicas == 2 && s.ready_replicas == Some(2)).then_some(s)
    })
    .await;
    assert_eq!(status.available_replicas, Some(2));
    let reasons = event_reasons(client, "ReplicaSet", "rs", "SuccessfulDelete").await;
    assert!(
        reasons.iter().any(|r| r == "SuccessfulCreate"),
        "{reasons:?}"
    );
}
