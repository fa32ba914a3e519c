//! A control plane for controller tests: the API over an embedded store in a temp dir, the
//! controllers over the in-process client, and a stand-in for node agents that writes pod
//! status and finishes graceful deletions. No scheduler and no agent run.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::client::in_process;
use coxswain_control_plane::controllers::{ControllersConfig, TokioClock, run_all};
use coxswain_control_plane::store::EmbeddedStore;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A running control plane; everything stops when it is dropped.
pub struct Cluster {
    pub client: kube::Client,
    shutdown: CancellationToken,
    _server: ApiServer,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Short restart back-off so restart tests finish quickly; a clock that follows tokio's.
pub fn fast_config() -> ControllersConfig {
    ControllersConfig {
        restart_backoff_base: Duration::from_millis(50),
        restart_backoff_max: Duration::from_millis(200),
        error_backoff_base: Duration::from_millis(20),
        error_backoff_max: Duration::from_millis(200),
        gc_resync: Duration::from_secs(5),
        clock: Arc::new(TokioClock::new()),
        metrics: None,
    }
}

/// Starts the API and the controllers with `config`.
pub async fn start(config: ControllersConfig) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let shutdown = CancellationToken::new();
    let server = ApiServer::new(store, shutdown.clone()).await.unwrap();
    let client = in_process(&server);
    // The jobs under test name PriorityClass `training`; Priority admission refuses pods
    // of a class that does not exist, as Kubernetes does.
    let class: k8s_openapi::api::scheduling::v1::PriorityClass = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "training"}, "value": 1000}),
    )
    .unwrap();
    Api::<k8s_openapi::api::scheduling::v1::PriorityClass>::all(client.clone())
        .create(&Default::default(), &class)
        .await
        .unwrap();
    tokio::spawn(run_all(client.clone(), config, shutdown.clone()));
    tokio::spawn(finish_graceful_deletions(client.clone(), shutdown.clone()));
    Cluster {
        client,
        shutdown,
        _server: server,
        _dir: dir,
    }
}

/// Labels the `default` namespace `pod-security.kubernetes.io/enforce: privileged`, for
/// jobs whose pods mount a hostPath: Pod Security admission refuses those at the default
/// level (baseline).
pub async fn allow_host_pods(client: &kube::Client) {
    let patch = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "privileged"}}});
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch("default", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("labelling namespace default privileged");
}

/// What an agent does for a pod being deleted on its node: stops it and deletes it with
/// grace 0.
async fn finish_graceful_deletions(client: kube::Client, shutdown: CancellationToken) {
    let pods = Api::<Pod>::all(client.clone());
    let mut events = watcher(pods, watcher::Config::default()).boxed();
    let mut stopped = std::collections::HashSet::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        let Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) = event else {
            continue;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_none() || !stopped.insert(uid) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let _ = Api::<Pod>::namespaced(client.clone(), &ns)
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await;
    }
}

/// Polls `check` every 20 ms until it returns `Some`; panics naming `what` after 30 s.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Binds `name` to `node` and reports `phase` as its agent would (Failed pods with exit
/// code `exit_code`).
pub async fn report(pods: &Api<Pod>, name: &str, phase: &str, exit_code: i32) {
    pods.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"nodeName": "node-1"}})),
    )
    .await
    .unwrap();
    let mut status = json!({"phase": phase});
    if phase == "Failed" || phase == "Succeeded" {
        status["containerStatuses"] = json!([{
            "name": "trainer", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "reason": if exit_code == 0 { "Completed" } else { "Error" }}}
        }]);
    }
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
}
