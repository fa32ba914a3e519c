//! A control plane for the workload-controller tests: the API server over an embedded store
//! in a temp dir, the workload controllers, and helpers that play the kubelet by writing pod
//! status through the API. No scheduler, no agent.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::client::in_process;
use coxswain_control_plane::store::EmbeddedStore;
use coxswain_control_plane::workloads::{self, WorkloadsConfig};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use tokio_util::sync::CancellationToken;

/// A running API server and workload controllers; stopped on drop.
pub struct Cluster {
    pub client: kube::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Test settings: pod re-creation back-off of 10 ms instead of 10 s.
pub fn fast_config() -> WorkloadsConfig {
    WorkloadsConfig {
        job_backoff_base: Duration::from_millis(10),
        job_backoff_max: Duration::from_millis(40),
        error_backoff_base: Duration::from_millis(10),
        error_backoff_max: Duration::from_millis(200),
        ..WorkloadsConfig::default()
    }
}

pub async fn start(config: WorkloadsConfig) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let shutdown = CancellationToken::new();
    let server = ApiServer::new(store, shutdown.clone()).await.unwrap();
    let client = in_process(&server);
    tokio::spawn(workloads::run(client.clone(), config, shutdown.clone()));
    Cluster {
        client,
        shutdown,
        _dir: dir,
    }
}

/// Polls `check` every 10 ms until it returns `Some`; panics naming `what` after 20 s.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn obj<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// The pods in `default` matching `labels`, without those being deleted.
pub async fn live_pods(client: &kube::Client, labels: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels(labels))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Plays the kubelet: writes `phase` (and Ready for Running, an exit code for finished
/// pods) to the pod's status.
pub async fn set_phase(client: &kube::Client, pod: &Pod, phase: &str, exit_code: i32) {
    let name = pod.metadata.name.clone().unwrap();
    let ready = phase == "Running";
    let now = jiff::Timestamp::now().to_string();
    let state = if phase == "Succeeded" || phase == "Failed" {
        serde_json::json!({"terminated": {"exitCode": exit_code, "finishedAt": now}})
    } else {
        serde_json::json!({"running": {"startedAt": now}})
    };
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let status = serde_json::json!({"status": {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": now}],
        "containerStatuses": [{"name": container, "image": "busybox", "imageID": "", "ready": ready,
                               "restartCount": 0, "state": state}],
    }});
    Api::<Pod>::namespaced(client.clone(), "default")
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// The reasons of the events recorded about the `kind` object `name` in `default`, once
/// `reason` is among them (events are written after the step that causes them).
pub async fn event_reasons(
    client: &kube::Client,
    kind: &str,
    name: &str,
    reason: &str,
) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let params = ListParams::default().fields(&format!("involvedObject.name={name}"));
    wait_for(&format!("a {reason} event on {kind} {name}"), || async {
        let reasons: Vec<String> = events
            .list(&params)
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some(kind))
            .filter_map(|e| e.reason)
            .collect();
        reasons.iter().any(|r| r == reason).then_some(reasons)
    })
    .await
}
