//! The scheduler run against the API: an in-process API server over the embedded store,
//! the runner spawned on it, and nodes, GPU slices, pods and pod groups written through a
//! kube client as the agent and users would.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coxswain_api::coxswain::{PodGroup, PodGroupSpec};
use coxswain_api::devices::{GpuDevice, gpu_slice};
use coxswain_api::k8s::{Node, Pod, ResourceSlice};
use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::client::in_process;
use coxswain_control_plane::scheduler::queue::Backoff;
use coxswain_control_plane::scheduler::runner::{self, RunnerConfig};
use coxswain_control_plane::scheduler::{Binding, GPU_DEVICES_ANNOTATION, SchedulerConfig};
use coxswain_control_plane::store::EmbeddedStore;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Every wait gives up after this long (a failure guard, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(30);

struct Cluster {
    _dir: tempfile::TempDir,
    client: kube::Client,
    shutdown: CancellationToken,
    runner: tokio::task::JoinHandle<Result<(), runner::RunnerError>>,
}

impl Cluster {
    async fn start() -> Self {
        Self::start_with(RunnerConfig::default()).await
    }

    async fn start_with(mut config: RunnerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let shutdown = CancellationToken::new();
        let server = ApiServer::new(store, shutdown.clone()).await.unwrap();
        let client = in_process(&server);
        config.scheduler = SchedulerConfig {
            backoff: Backoff {
                initial: Duration::from_millis(20),
                max: Duration::from_millis(200),
            },
            ..SchedulerConfig::default()
        };
        let runner = tokio::spawn(runner::run(client.clone(), config, shutdown.clone()));
        Cluster {
            _dir: dir,
            client,
            shutdown,
            runner,
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// A node with `gpus` GPUs in NVLink islands of 4, published as a ResourceSlice.
    async fn add_node(&self, name: &str, gpus: u32, cordoned: bool) {
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

    async fn create_pod(&self, name: &str, resource: &str, amount: u32, group: Option<&str>) {
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

    /// Polls pod `name` until `done` holds for it.
    async fn wait_for(&self, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
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

    async fn wait_bound(&self, name: &str) -> Pod {
        self.wait_for(name, "bound", |p| node_of(p).is_some()).await
    }

    async fn wait_unschedulable(&self, name: &str, message: &str) -> Pod {
        self.wait_for(name, "unschedulable", |p| {
            scheduled_condition(p).is_some_and(|(s, m)| s == "False" && m.contains(message))
        })
        .await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.runner.await.unwrap().unwrap();
    }
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
}

/// `(status, message)` of the pod's PodScheduled condition.
fn scheduled_condition(pod: &Pod) -> Option<(String, String)> {
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
fn devices(pod: &Pod) -> Vec<(String, u32)> {
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
fn island_of(uuid: &str) -> (String, u32) {
    let rest = uuid.strip_prefix("GPU-").unwrap();
    let (node, index) = rest.rsplit_once('-').unwrap();
    (node.to_string(), index.parse::<u32>().unwrap() / 4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_gpu_pods_get_island_aligned_devices() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 8, false).await;
    cluster.add_node("node-b", 8, false).await;
    for i in 0..4 {
        cluster
            .create_pod(&format!("train-{i}"), "nvidia.com/gpu", 4, None)
            .await;
    }
    let mut taken = BTreeSet::new();
    for i in 0..4 {
        let pod = cluster.wait_bound(&format!("train-{i}")).await;
        let node = node_of(&pod).unwrap();
        let devs = devices(&pod);
        assert_eq!(devs.len(), 4, "{devs:?}");
        let islands: BTreeSet<(String, u32)> = devs.iter().map(|(id, _)| island_of(id)).collect();
        assert_eq!(islands.len(), 1, "one NVLink island: {devs:?}");
        assert_eq!(
            islands.first().unwrap().0,
            node,
            "devices of the bound node"
        );
        for (id, milli) in devs {
            assert_eq!(milli, 1000);
            assert!(taken.insert(id.clone()), "{id} given twice");
        }
        let scheduled = cluster
            .wait_for(&format!("train-{i}"), "PodScheduled=True", |p| {
                scheduled_condition(p).is_some_and(|(s, _)| s == "True")
            })
            .await;
        assert!(node_of(&scheduled).is_some());
    }
    assert_eq!(taken.len(), 16);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_shares_pack_a_device_without_exceeding_1000_milli() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 2, false).await;
    for (name, milli) in [("s0", 600), ("s1", 600), ("s2", 400), ("s3", 400)] {
        cluster
            .create_pod(name, "coxswain.dev/gpu-milli", milli, None)
            .await;
        cluster.wait_bound(name).await;
    }
    let mut used: HashMap<String, u32> = HashMap::new();
    for name in ["s0", "s1", "s2", "s3"] {
        let pod = cluster.pods().get(name).await.unwrap();
        let devs = devices(&pod);
        assert_eq!(devs.len(), 1, "a share is of one device: {devs:?}");
        *used.entry(devs[0].0.clone()).or_default() += devs[0].1;
    }
    assert_eq!(used.len(), 2, "{used:?}");
    assert!(used.values().all(|&m| m == 1000), "{used:?}");
    // Both devices are full: one more share fits nowhere.
    cluster
        .create_pod("s4", "coxswain.dev/gpu-milli", 100, None)
        .await;
    let pod = cluster
        .wait_unschedulable("s4", "0/1 nodes are available")
        .await;
    assert_eq!(node_of(&pod), None);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gang_binds_only_when_all_members_exist() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 8, false).await;
    cluster.add_node("node-b", 8, false).await;
    let groups: Api<PodGroup> = Api::namespaced(cluster.client.clone(), "default");
    let group = PodGroup::new(
        "gang",
        PodGroupSpec {
            min_member: 3,
            ..Default::default()
        },
    );
    groups.create(&PostParams::default(), &group).await.unwrap();
    for i in 0..2 {
        cluster
            .create_pod(&format!("m{i}"), "nvidia.com/gpu", 4, Some("gang"))
            .await;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut waiting = false;
        for i in 0..2 {
            let pod = cluster.pods().get(&format!("m{i}")).await.unwrap();
            assert_eq!(
                node_of(&pod),
                None,
                "a member bound before the gang was complete"
            );
            waiting |= scheduled_condition(&pod)
                .is_some_and(|(s, m)| s == "False" && m.contains("has 2 of 3 pods"));
        }
        if waiting {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gang never reported waiting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster
        .create_pod("m2", "nvidia.com/gpu", 4, Some("gang"))
        .await;
    let mut taken = BTreeSet::new();
    for i in 0..3 {
        let pod = cluster.wait_bound(&format!("m{i}")).await;
        for (id, _) in devices(&pod) {
            assert!(taken.insert(id));
        }
    }
    assert_eq!(taken.len(), 12);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfit_pod_says_why_and_binds_when_a_node_joins() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 8, false).await;
    cluster.add_node("node-b", 8, true).await;
    cluster.add_node("node-c", 8, false).await;
    for name in ["big-a", "big-c"] {
        cluster.create_pod(name, "nvidia.com/gpu", 8, None).await;
        cluster.wait_bound(name).await;
    }
    cluster.create_pod("late", "nvidia.com/gpu", 4, None).await;
    let pod = cluster
        .wait_unschedulable(
            "late",
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient nvidia.com/gpu.",
        )
        .await;
    assert_eq!(node_of(&pod), None);
    let condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .unwrap();
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    cluster.add_node("node-d", 8, false).await;
    let pod = cluster.wait_bound("late").await;
    assert_eq!(node_of(&pod).as_deref(), Some("node-d"));
    assert!(
        devices(&pod)
            .iter()
            .all(|(id, _)| island_of(id).0 == "node-d")
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_that_races_a_change_is_retried_on_the_new_version() {
    let client_slot: Arc<std::sync::OnceLock<kube::Client>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let handle = tokio::runtime::Handle::current();
    let hook = {
        let (slot, calls) = (client_slot.clone(), calls.clone());
        Arc::new(move |binding: &Binding| {
            if calls.fetch_add(1, Ordering::SeqCst) > 0 {
                return;
            }
            // Someone else writes the pod between the decision and the bind.
            let pods: Api<Pod> = Api::namespaced(slot.get().unwrap().clone(), "default");
            let name = binding.pod.split_once('/').unwrap().1.to_string();
            let patch = json!({"metadata": {"labels": {"touched": "yes"}}});
            handle
                .block_on(pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)))
                .unwrap();
        })
    };
    let cluster = Cluster::start_with(RunnerConfig {
        before_bind: Some(hook),
        ..RunnerConfig::default()
    })
    .await;
    assert!(client_slot.set(cluster.client.clone()).is_ok());
    cluster.add_node("node-a", 8, false).await;
    cluster.create_pod("racer", "nvidia.com/gpu", 2, None).await;
    let pod = cluster.wait_bound("racer").await;
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "the first bind conflicted and was retried"
    );
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("touched").map(String::as_str),
        Some("yes"),
        "the bind was written on top of the concurrent change, not over it"
    );
    assert_eq!(devices(&pod).len(), 2);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pods_gpus_go_to_the_next_pod() {
    let cluster = Cluster::start().await;
    cluster.add_node("node-a", 8, false).await;
    cluster.create_pod("first", "nvidia.com/gpu", 8, None).await;
    let first = cluster.wait_bound("first").await;
    cluster
        .create_pod("second", "nvidia.com/gpu", 8, None)
        .await;
    cluster
        .wait_unschedulable("second", "Insufficient nvidia.com/gpu")
        .await;
    let delete = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    cluster.pods().delete("first", &delete).await.unwrap();
    let second = cluster.wait_bound("second").await;
    let ids = |p: &Pod| -> BTreeSet<String> { devices(p).into_iter().map(|d| d.0).collect() };
    assert_eq!(ids(&second), ids(&first));
    let scheduled = cluster
        .wait_for("second", "PodScheduled=True", |p| {
            scheduled_condition(p).is_some_and(|(s, m)| s == "True" && m.is_empty())
        })
        .await;
    assert!(node_of(&scheduled).is_some());
    cluster.stop().await;
}
