//! An in-process control plane for agent tests: the API server on an embedded store
//! and the node service, served on 127.0.0.1:0 (no scheduler: test pods name their
//! node), plus the pod helpers the agent tests share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coxswain_api::k8s::Pod;
use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::client::in_process;
use coxswain_control_plane::nodeservice::{NodeService, NodeServiceConfig};
use coxswain_control_plane::store::EmbeddedStore;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

/// A control plane on a loopback port; stopped on drop.
pub struct ControlPlane {
    _dir: tempfile::TempDir,
    /// The URL agents connect to (`http://127.0.0.1:port`).
    pub url: String,
    /// An in-process client.
    pub client: kube::Client,
    shutdown: CancellationToken,
}

impl ControlPlane {
    /// Starts one whose node service assigns pod CIDRs as `config` says.
    pub async fn start(config: NodeServiceConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let shutdown = CancellationToken::new();
        let api = ApiServer::new(store, shutdown.clone()).await.unwrap();
        let client = in_process(&api);
        let nodes = NodeService::new(client.clone(), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(coxswain_control_plane::serve::serve(
            api,
            nodes,
            listener,
            shutdown.clone(),
        ));
        Self {
            _dir: dir,
            url,
            client,
            shutdown,
        }
    }

    /// Labels the `default` namespace `pod-security.kubernetes.io/enforce: privileged`,
    /// for tests whose pods share the host's network namespace: the API refuses those
    /// in a namespace at the default (baseline) level.
    pub async fn allow_host_pods(&self) {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let patch = serde_json::json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "privileged"}}});
        namespaces
            .patch(
                "default",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect("labelling namespace default privileged");
    }

    /// Pods of the `default` namespace.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates pod `name` bound to `node` with `spec`; returns its uid.
    pub async fn create_pod(&self, name: &str, node: &str, spec: serde_json::Value) -> String {
        let mut spec = spec;
        spec["nodeName"] = node.into();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }))
        .unwrap();
        let created = self
            .pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap_or_else(|e| panic!("creating pod {name}: {e}"));
        created.metadata.uid.unwrap()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `check` every 100 ms until it returns `Some`; panics with `what` after a
/// generous hang guard (not a timing assertion).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let limit = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pod `name` once `done` holds for it; panics with the last status seen after the
/// hang guard.
pub async fn pod_when(
    cp: &ControlPlane,
    name: &str,
    what: &str,
    done: impl Fn(&Pod) -> bool,
) -> Pod {
    let pods = cp.pods();
    let limit = Instant::now() + Duration::from_secs(180);
    let mut last = None;
    loop {
        if let Ok(Some(pod)) = pods.get_opt(name).await {
            if done(&pod) {
                return pod;
            }
            last = Some(pod);
        }
        assert!(
            Instant::now() < limit,
            "timed out waiting for {what}; last seen: {:#?}",
            last.and_then(|p| p.status)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pod's phase ("" when none).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The pod's first IP.
pub fn pod_ip(pod: &Pod) -> Option<std::net::IpAddr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// Whether the pod's first app container is running and ready.
pub fn ready(pod: &Pod) -> bool {
    first_container(pod).is_some_and(|c| c.ready)
}

/// The restart count of the pod's first app container.
pub fn restarts(pod: &Pod) -> i32 {
    first_container(pod).map_or(0, |c| c.restart_count)
}

fn first_container(pod: &Pod) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

/// The pod-level (reason, message) of the pod's status.
pub fn pod_reason(pod: &Pod) -> (String, String) {
    let status = pod.status.clone().unwrap_or_default();
    (
        status.reason.unwrap_or_default(),
        status.message.unwrap_or_default(),
    )
}
