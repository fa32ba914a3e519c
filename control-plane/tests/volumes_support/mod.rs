//! The volume test harness: the node-service cluster (API and node service on one loopback
//! listener, a real gRPC client) with the volume controller running, and helpers for
//! classes, claims, volumes, events and waiting.

#![allow(dead_code, unused_imports)]

#[path = "../nodeservice_support/mod.rs"]
mod nodeservice_support;

pub use nodeservice_support::*;

pub use coxswain_control_plane::controllers::{ControllersConfig, TokioClock, volumes};
pub use coxswain_proto::node::v1alpha1::volume_event::Type as VolumeEventType;
pub use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim};
pub use k8s_openapi::api::storage::v1::StorageClass;

/// The driver the tests' nodes announce.
pub const DRIVER: &str = "csi.coxswain.dev";

/// The node-service cluster with the volume controller running.
pub async fn start_with_controller() -> Cluster {
    let cluster = start().await;
    let config = ControllersConfig {
        error_backoff_base: Duration::from_millis(20),
        error_backoff_max: Duration::from_millis(200),
        clock: Arc::new(TokioClock::new()),
        ..ControllersConfig::default()
    };
    tokio::spawn(volumes::run(
        cluster.client.clone(),
        config,
        cluster.shutdown.clone(),
    ));
    cluster
}

/// Registers `name` announcing `drivers` in `csi.volume.kubernetes.io/nodeid`.
pub async fn register_with_drivers(cluster: &Cluster, name: &str, ip: &str, drivers: &[&str]) {
    let mut node = node_json(name, ip);
    let ids: serde_json::Map<String, Value> = drivers
        .iter()
        .map(|d| (d.to_string(), json!(name)))
        .collect();
    node["metadata"]["annotations"] =
        json!({"csi.volume.kubernetes.io/nodeid": Value::Object(ids).to_string()});
    cluster
        .grpc
        .clone()
        .register(pb::RegisterRequest {
            node: serde_json::to_vec(&node).unwrap(),
        })
        .await
        .unwrap();
}

pub fn claims(cluster: &Cluster) -> Api<PersistentVolumeClaim> {
    Api::namespaced(cluster.client.clone(), "default")
}

pub fn volumes_api(cluster: &Cluster) -> Api<PersistentVolume> {
    Api::all(cluster.client.clone())
}

pub async fn create_class(cluster: &Cluster, class: Value) -> StorageClass {
    Api::<StorageClass>::all(cluster.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(class).unwrap(),
        )
        .await
        .unwrap()
}

pub async fn create_claim(cluster: &Cluster, claim: Value) -> PersistentVolumeClaim {
    claims(cluster)
        .create(
            &PostParams::default(),
            &serde_json::from_value(claim).unwrap(),
        )
        .await
        .unwrap()
}

pub async fn create_volume(cluster: &Cluster, volume: Value) -> PersistentVolume {
    volumes_api(cluster)
        .create(
            &PostParams::default(),
            &serde_json::from_value(volume).unwrap(),
        )
        .await
        .unwrap()
}

/// A claim of `size` in `class` asking for ReadWriteOnce.
pub fn claim_json(name: &str, class: &str, size: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "resources": {"requests": {"storage": size}},
        }
    })
}

/// Polls `check` on what `read` returns until it holds (10 s at most).
pub async fn eventually<T, F, Fut>(what: &str, mut read: F, check: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let value = read().await;
        if check(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The claim once its phase is `phase`.
pub async fn claim_in_phase(cluster: &Cluster, name: &str, phase: &str) -> PersistentVolumeClaim {
    let api = claims(cluster);
    eventually(
        &format!("claim {name} {phase}"),
        || async { api.get_opt(name).await.unwrap() },
        |c: &Option<PersistentVolumeClaim>| {
            c.as_ref()
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some(phase)
        },
    )
    .await
    .unwrap()
}

/// The volume once its phase is `phase`.
pub async fn volume_in_phase(cluster: &Cluster, name: &str, phase: &str) -> PersistentVolume {
    let api = volumes_api(cluster);
    eventually(
        &format!("volume {name} {phase}"),
        || async { api.get_opt(name).await.unwrap() },
        |v: &Option<PersistentVolume>| {
            v.as_ref()
                .and_then(|v| v.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some(phase)
        },
    )
    .await
    .unwrap()
}

/// The events about the object `name` in `namespace`.
pub async fn events_about(cluster: &Cluster, namespace: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), namespace);
    let all = api.list(&ListParams::default()).await.unwrap().items;
    all.into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .collect()
}

/// The first event about `name` with `reason`, once there is one.
pub async fn event_with_reason(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    reason: &str,
) -> Event {
    let events = eventually(
        &format!("a {reason} event about {name}"),
        || events_about(cluster, namespace, name),
        |events: &Vec<Event>| events.iter().any(|e| e.reason.as_deref() == Some(reason)),
    )
    .await;
    events
        .into_iter()
        .find(|e| e.reason.as_deref() == Some(reason))
        .unwrap()
}

pub fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

pub fn finalizers(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<String> {
    meta.finalizers.clone().unwrap_or_default()
}
