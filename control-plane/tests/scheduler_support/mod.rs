//! The scheduler run against the API, shared by the `scheduler_*` runner tests: an API
//! server over the embedded store (in-process client, and served on 127.0.0.1 for kubectl),
//! the runner spawned on it, and nodes, GPU slices and pods written as the agent and users
//! would.

#![allow(dead_code, reason = "each test binary uses part of the support module")]

use std::sync::Arc;
use std::time::Duration;

use coxswain_api::coxswain::PodGroup;
use coxswain_api::devices::{GpuDevice, gpu_slice};
use coxswain_api::k8s::{Node, Pod, ResourceSlice};
use coxswain_control_plane::apiserver::{ApiServer, kubeconfig};
use coxswain_control_plane::client::in_process;
use coxswain_control_plane::scheduler::queue::Backoff;
use coxswain_control_plane::scheduler::runner::{self, RunnerConfig};
use coxswain_control_plane::scheduler::{GPU_DEVICES_ANNOTATION, SchedulerConfig};
use coxswain_control_plane::store::EmbeddedStore;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Every wait gives up after this long (a failure guard, not a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Cluster {
    _dir: tempfile::TempDir,
    /// The in-process client.
    pub client: kube::Client,
    /// The kubeconfig of the API served over HTTP on 127.0.0.1 (for kubectl).
    pub kubeconfig: std::path::PathBuf,
    shutdown: CancellationToken,
    runner: tokio::task::JoinHandle<Result<(), runner::RunnerError>>,
}

impl Cluster {
    pub async fn start() -> Self {
        Self::start_with(RunnerConfig::default()).await
    }

    pub async fn start_with(mut config: RunnerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let shutdown = CancellationToken::new();
        let server = ApiServer::new(store, shutdown.clone()).await.unwrap();
        let client = in_process(&server);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(server.serve(listener));
        let kubeconfig = dir.path().join("kubeconfig");
        kubeconfig::write(&kubeconfig, &url).unwrap();
        config.scheduler = SchedulerConfig {
            backoff: Backoff {
                initial: Duration::from_millis(20),
                max: Duration::from_millis(200),
            },
            ..config.scheduler
        };
        let runner = tokio::spawn(runner::run(client.clone(), config, shutdown.clone()));
        Cluster {
            _dir: dir,
            client,
            kubeconfig,
            shutdown,
            runner,
        }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// A node with `gpus` GPUs in NVLink islands of 4, published as a ResourceSlice.
    pub async fn add_node(&self, name: &str, gpus: u32, cordoned: bool) {
        let devices: Vec<GpuDevice> = (0..gpus)
            .map(|i| GpuDevice {
                uuid: format!("GPU-{name}-{i}"),
                index: i,
                model: "NVIDIA H100 80GB HBM3".into(),
                memory_bytes: 80 << 30,
                numa_node: i / 4,
                nvlink_island: i / 4,
                pcie_root: format!("pci0000:{i:02x}"),
                compute_capability: "9.0".into(),
                simulated: true,
                resource_name: "nvidia.com/gpu".into(),
            })
            .collect();
        let slices: Api<ResourceSlice> = Api::all(self.client.clone());
        slices
            .create(
                &PostParams::default(),
                &gpu_slice(name, "nvidia.com/gpu", &devices),
            )
            .await
            .unwrap();
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"unschedulable": cordoned},
            "status": {"allocatable": {
                "cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": gpus.to_string()
            }}
        }))
        .unwrap();
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }

    pub async fn create_pod(&self, name: &str, resource: &str, amount: u32, group: Option<&str>) {
        let mut labels = serde_json::Map::new();
        if let Some(g) = group {
            labels.insert(PodGroup::POD_LABEL.into(), json!(g));
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{
                "name": "c", "image": "busybox",
                "resources": {
                    "requests": {"cpu": "1", resource: amount.to_string()},
                    "limits": {resource: amount.to_string()}
                }
            }]}
        }))
        .unwrap();
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
    }

    /// Creates the pod `value` describes in `default`.
    pub async fn create(&self, value: serde_json::Value) -> Pod {
        let pod: Pod = serde_json::from_value(value).unwrap();
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap()
    }

    /// Polls pod `name` until `done` holds for it.
    pub async fn wait_for(&self, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let pod = self.pods().get(name).await.unwrap();
            if done(&pod) {
                return pod;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("pod {name} never became {what}: {pod:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_bound(&self, name: &str) -> Pod {
        self.wait_for(name, "bound", |p| node_of(p).is_some()).await
    }

    pub async fn wait_unschedulable(&self, name: &str, message: &str) -> Pod {
        self.wait_for(name, "unschedulable", |p| {
            scheduled_condition(p).is_some_and(|(s, m)| s == "False" && m.contains(message))
        })
        .await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.runner.await.unwrap().unwrap();
    }
}

pub fn node_of(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
}

/// `(status, message)` of the pod's PodScheduled condition.
pub fn scheduled_condition(pod: &Pod) -> Option<(String, String)> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    Some((c.status.clone(), c.message.clone().unwrap_or_default()))
}

/// The GPU-devices annotation: `(uuid, milli)` per device.
pub fn devices(pod: &Pod) -> Vec<(String, u32)> {
    let value = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(GPU_DEVICES_ANNOTATION))
        .expect("GPU devices annotation");
    let items: Vec<String> = serde_json::from_str(value).unwrap();
    items
        .into_iter()
        .map(|item| match item.rsplit_once(':') {
            Some((id, milli)) => (id.to_string(), milli.parse().unwrap()),
            None => (item, 1000),
        })
        .collect()
}

/// `(node, island)` of a device uuid made by [`Cluster::add_node`].
pub fn island_of(uuid: &str) -> (String, u32) {
    let rest = uuid.strip_prefix("GPU-").unwrap();
    let (node, index) = rest.rsplit_once('-').unwrap();
    (node.to_string(), index.parse::<u32>().unwrap() / 4)
}

/// Events about pod `name` in `default` (by involvedObject), oldest first.
pub async fn events_of(client: &kube::Client, kind: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let selector = format!("involvedObject.kind={kind},involvedObject.name={name}");
    let mut list = api
        .list(&ListParams::default().fields(&selector))
        .await
        .unwrap()
        .items;
    list.sort_by_key(|e| e.first_timestamp.clone().map(|t| t.0));
    list
}

/// Polls until an event of `kind`/`name` with `reason` whose message contains `message`
/// exists and `also` holds for it; returns it.
pub async fn wait_event(
    client: &kube::Client,
    kind: &str,
    name: &str,
    reason: &str,
    message: &str,
    also: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let events = events_of(client, kind, name).await;
        if let Some(e) = events.iter().find(|e| {
            e.reason.as_deref() == Some(reason)
                && e.message.as_deref().is_some_and(|m| m.contains(message))
                && also(e)
        }) {
            return e.clone();
        }
        if tokio::time::Instant::now() > deadline {
            panic!("no {reason} event containing {message:?} for {kind} {name}: {events:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
