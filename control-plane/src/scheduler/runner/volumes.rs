//! The volume side of the runner: reflector stores of claims, volumes, classes and nodes
//! for the [`VolumeBinding`](super::super::plugins::VolumeBinding) plugin, and the PreBind
//! step the API binder runs before a pod's binding: each unbound claim of a provisioned
//! class gets `volume.kubernetes.io/selected-node` (the node's agent then provisions it)
//! and the binder waits, bounded, until every claim is Bound.

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::super::binder::BindError;
use super::super::plugins::VolumeView;
use crate::controllers::volumes::SELECTED_NODE;

/// How long the binder waits for a pod's claims to bind when the config says nothing.
pub const DEFAULT_VOLUME_BIND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the runner waits for the stores' first lists before scheduling anyway.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

fn reflect<K>(api: Api<K>, stop: &CancellationToken) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    let stop = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = stream.for_each(|_| futures::future::ready(())) => {}
            _ = stop.cancelled() => {}
        }
    });
    reader
}

/// Starts the stores and waits (bounded) for their first lists.
pub(crate) async fn view(client: &kube::Client, stop: &CancellationToken) -> VolumeView {
    let view = VolumeView {
        claims: reflect(Api::<PersistentVolumeClaim>::all(client.clone()), stop),
        volumes: reflect(Api::<PersistentVolume>::all(client.clone()), stop),
        classes: reflect(Api::<StorageClass>::all(client.clone()), stop),
        nodes: reflect(Api::<Node>::all(client.clone()), stop),
    };
    let ready = async {
        let _ = view.claims.wait_until_ready().await;
        let _ = view.volumes.wait_until_ready().await;
        let _ = view.classes.wait_until_ready().await;
        let _ = view.nodes.wait_until_ready().await;
    };
    if tokio::time::timeout(READY_TIMEOUT, ready).await.is_err() {
        tracing::warn!("volume stores not listed within {READY_TIMEOUT:?}; scheduling anyway");
    }
    view
}

fn is_bound(claim: &PersistentVolumeClaim) -> bool {
    claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

/// PreBind: selects `node` for `pod`'s unbound claims and waits until all are Bound.
pub(crate) async fn prebind(
    client: &kube::Client,
    pod: &Pod,
    node: &str,
    timeout: Duration,
) -> Result<(), BindError> {
    let names = crate::nodeservice::pods::claim_references(pod);
    if names.is_empty() {
        return Ok(());
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let key = format!(
        "{namespace}/{}",
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let failed = |message: String| BindError::Store {
        pod: key.clone(),
        message,
    };
    for name in &names {
        let claim = claims
            .get_opt(name)
            .await
            .map_err(|e| failed(format!("reading claim {name}: {e}")))?
            .ok_or_else(|| failed(format!("persistentvolumeclaim \"{name}\" not found")))?;
        let selected = claim
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SELECTED_NODE));
        if is_bound(&claim) || selected.map(String::as_str) == Some(node) {
            continue;
        }
        let patch = serde_json::json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
        claims
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| failed(format!("selecting node {node} for claim {name}: {e}")))?;
    }
    let all_bound = async {
        loop {
            let mut bound = true;
            for name in &names {
                match claims.get_opt(name).await {
                    Ok(Some(claim)) if is_bound(&claim) => {}
                    _ => bound = false,
                }
            }
            if bound {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(timeout, all_bound).await.map_err(|_| {
        failed(format!(
            "persistentvolumeclaims {names:?} not bound within {timeout:?} on node {node}"
        ))
    })
}
