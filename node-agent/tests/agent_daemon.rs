//! The agent daemon against a real control plane: an in-process API server and node
//! service served on a loopback port, the agent connected over gRPC, pods run by real
//! runc (and crun) on the busybox rootfs. Pods are created and deleted through the
//! kube client, as a user would.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Harness;
use coxswain_api::k8s::Pod;
use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::client::in_process;
use coxswain_control_plane::nodeservice::{NodeService, NodeServiceConfig};
use coxswain_control_plane::store::EmbeddedStore;
use coxswain_node_agent::AgentConfig;
use coxswain_node_agent::agent::{AgentDaemonConfig, NodeAgent, worker_deps};
use coxswain_node_agent::runtime::RuntimeKind;
use coxswain_proto::node::v1alpha1::ContainerLogsRequest;
use coxswain_proto::node::v1alpha1::agent_service_client::AgentServiceClient;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A control plane on 127.0.0.1:0.
struct ControlPlane {
    _dir: tempfile::TempDir,
    url: String,
    client: kube::Client,
    shutdown: CancellationToken,
}

impl ControlPlane {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let shutdown = CancellationToken::new();
        let api = ApiServer::new(store, shutdown.clone()).await.unwrap();
        let client = in_process(&api);
        let nodes = NodeService::new(client.clone(), NodeServiceConfig::default());
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

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A running agent daemon.
struct RunningAgent {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    pod_cidr: watch::Receiver<Option<String>>,
}

impl RunningAgent {
    /// Starts an agent named `node` over the harness's root (a restart when one ran before).
    fn start(h: &Harness, url: &str, node: &str) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_test_writer()
            .try_init();
        let mut config = AgentConfig::new(h.deps.config.root.clone());
        config.cgroup_root = h.cgroup_root.clone();
        config.backoff_initial = Duration::from_secs(1);
        config.backoff_max = Duration::from_secs(2);
        let shim = PathBuf::from(env!("CARGO_BIN_EXE_coxswain-shim"));
        let deps = worker_deps(&config, Some(h.kind), shim).unwrap();
        let mut daemon = AgentDaemonConfig::new(url, node);
        daemon.logs_listen = "127.0.0.1:0".parse().unwrap();
        daemon.lease_interval = Duration::from_secs(1);
        daemon
            .node_labels
            .insert("topology.coxswain.dev/rack".into(), "r1".into());
        let agent = NodeAgent::new(daemon, deps);
        let pod_cidr = agent.pod_cidr();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move { agent.run(stop).await.unwrap() });
        Self {
            shutdown,
            task,
            pod_cidr,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

/// Polls `check` until it returns `Some`; panics with `what` after a generous
/// hang guard (not a timing assertion).
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let limit = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pod(name: &str, node: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["nodeName"] = node.into();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}

async fn create(cp: &ControlPlane, pod: &Pod) -> String {
    let created = cp.pods().create(&PostParams::default(), pod).await.unwrap();
    created.metadata.uid.unwrap()
}

/// The pod once `done` holds for it; panics with the last one seen after a
/// generous hang guard (not a timing assertion).
async fn pod_when(cp: &ControlPlane, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
    let pods = cp.pods();
    let limit = Instant::now() + Duration::from_secs(120);
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

async fn gone(cp: &ControlPlane, name: &str) {
    let pods = cp.pods();
    eventually(&format!("pod {name} to leave the API"), || {
        let pods = pods.clone();
        async move { matches!(pods.get_opt(name).await, Ok(None)).then_some(()) }
    })
    .await;
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn container_status(pod: &Pod) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

fn waiting_reason(pod: &Pod) -> Option<String> {
    container_status(pod)?.state?.waiting?.reason
}

async fn logs(port: u16, request: ContainerLogsRequest) -> Result<String, tonic::Status> {
    let mut client = AgentServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let mut stream = client.container_logs(request).await?.into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        out.extend(chunk.data);
    }
    Ok(String::from_utf8(out).unwrap())
}

fn logs_request(pod: &str, container: &str) -> ContainerLogsRequest {
    ContainerLogsRequest {
        namespace: "default".into(),
        pod: pod.into(),
        container: container.into(),
        tail_lines: -1,
        ..Default::default()
    }
}

async fn node_logs_port(cp: &ControlPlane, node: &str) -> u16 {
    let nodes: Api<Node> = Api::all(cp.client.clone());
    let node = nodes.get(node).await.unwrap();
    let port = node
        .status
        .unwrap()
        .daemon_endpoints
        .unwrap()
        .kubelet_endpoint
        .unwrap()
        .port;
    u16::try_from(port).unwrap()
}

fn container_pid(h: &Harness, uid: &str, container: &str) -> Option<u32> {
    h.deps
        .runtime
        .state(&format!("{uid}_{container}"))
        .unwrap()
        .and_then(|s| s.pid)
}

/// Everything left on the node, outside the pods in `keep`.
fn leftovers_except(h: &Harness, keep: &BTreeSet<String>) -> Vec<String> {
    h.leftovers()
        .into_iter()
        .filter(|l| !keep.iter().any(|uid| l.contains(uid.as_str())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_registers_ready_and_pods_run_to_completion_with_logs() {
    let h = Harness::new(RuntimeKind::Runc);
    let cp = ControlPlane::start().await;
    let node = "node-a";
    let mut agent = RunningAgent::start(&h, &cp.url, node);

    let nodes: Api<Node> = Api::all(cp.client.clone());
    let registered = eventually("the node to register", || {
        let nodes = nodes.clone();
        async move { nodes.get_opt(node).await.ok().flatten() }
    })
    .await;
    let status = registered.status.clone().unwrap();
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    let capacity = status.capacity.unwrap();
    for resource in ["cpu", "memory", "pods"] {
        assert!(
            capacity.contains_key(resource),
            "capacity lacks {resource}: {capacity:?}"
        );
    }
    assert_eq!(capacity["pods"].0, "110");
    let labels = registered.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], node);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["topology.coxswain.dev/rack"], "r1");
    let info = status.node_info.unwrap();
    assert!(
        info.container_runtime_version.starts_with("runc://"),
        "{info:?}"
    );
    let cidr = agent
        .pod_cidr
        .wait_for(Option::is_some)
        .await
        .unwrap()
        .clone();
    assert_eq!(cidr, registered.spec.unwrap().pod_cidr);

    let spec = serde_json::json!({
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo hello; echo oops >&2; echo bye"]}],
    });
    create(&cp, &pod("hello", node, spec)).await;
    let done = pod_when(&cp, "hello", "pod hello to succeed", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let terminated = container_status(&done)
        .unwrap()
        .state
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(terminated.exit_code, 0);
    assert_eq!(terminated.reason.as_deref(), Some("Completed"));

    let port = node_logs_port(&cp, node).await;
    let all = logs(port, logs_request("hello", "main")).await.unwrap();
    // stdout keeps its order; stderr comes through its own pipe.
    let lines: Vec<&str> = all.lines().collect();
    let stdout: Vec<&str> = lines.iter().copied().filter(|l| *l != "oops").collect();
    assert_eq!(stdout, ["hello", "bye"], "{all:?}");
    assert!(lines.contains(&"oops"), "{all:?}");
    let mut tail = logs_request("hello", "main");
    tail.tail_lines = 1;
    tail.timestamps = true;
    let last = logs(port, tail).await.unwrap();
    let (stamp, text) = last.trim_end().split_once(' ').unwrap();
    assert!(stamp.ends_with('Z') && stamp.len() == 30, "{last:?}");
    assert_eq!(Some(text), all.lines().last(), "{last:?}");
    let mut previous = logs_request("hello", "main");
    previous.previous = true;
    let err = logs(port, previous).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let err = logs(port, logs_request("nope", "main")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    // A container that prints over time is followed until it exits.
    let spec = serde_json::json!({
        "restartPolicy": "Never",
        "containers": [{"name": "ticker", "image": "busybox",
            "command": ["sh", "-c", "sleep 1; for i in 1 2 3; do echo tick $i; sleep 0.3; done"]}],
    });
    create(&cp, &pod("ticker", node, spec)).await;
    pod_when(&cp, "ticker", "pod ticker to run", |p| {
        phase(p) == "Running"
    })
    .await;
    let mut follow = logs_request("ticker", "ticker");
    follow.follow = true;
    let followed = logs(port, follow).await.unwrap();
    assert_eq!(followed, "tick 1\ntick 2\ntick 3\n");

    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loops_and_bad_images_report_reasons_and_the_agent_keeps_going() {
    let h = Harness::new(RuntimeKind::Runc);
    let cp = ControlPlane::start().await;
    let node = "node-b";
    let agent = RunningAgent::start(&h, &cp.url, node);
    let crash = serde_json::json!({
        "restartPolicy": "Always",
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo try; exit 3"]}],
    });
    create(&cp, &pod("crash", node, crash)).await;
    let bad_image = serde_json::json!({
        "containers": [{"name": "main", "image": "registry.invalid/no-such-image:1"}],
    });
    create(&cp, &pod("bad-image", node, bad_image)).await;

    let crashing = pod_when(&cp, "crash", "CrashLoopBackOff with a restart", |p| {
        let Some(c) = container_status(p) else {
            return false;
        };
        c.restart_count >= 1 && waiting_reason(p).as_deref() == Some("CrashLoopBackOff")
    })
    .await;
    let last = container_status(&crashing)
        .unwrap()
        .last_state
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(last.exit_code, 3);
    let bad = pod_when(&cp, "bad-image", "an image pull reason", |p| {
        matches!(
            waiting_reason(p).as_deref(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    })
    .await;
    let message = container_status(&bad)
        .unwrap()
        .state
        .unwrap()
        .waiting
        .unwrap()
        .message;
    assert!(
        message.unwrap_or_default().contains("no-such-image"),
        "the message names the image"
    );
    // The previous instance's log is there.
    let port = node_logs_port(&cp, node).await;
    let mut previous = logs_request("crash", "main");
    previous.previous = true;
    assert_eq!(logs(port, previous).await.unwrap(), "try\n");

    // The agent still runs pods.
    let ok = serde_json::json!({
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
    });
    create(&cp, &pod("after", node, ok)).await;
    pod_when(&cp, "after", "pod after to succeed", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_running_pod_removes_it_from_the_api_and_the_node() {
    let h = Harness::new(RuntimeKind::Runc);
    let cp = ControlPlane::start().await;
    let node = "node-c";
    let agent = RunningAgent::start(&h, &cp.url, node);
    let spec = serde_json::json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "300"]}],
    });
    let uid = create(&cp, &pod("sleeper", node, spec)).await;
    pod_when(&cp, "sleeper", "pod sleeper to run", |p| {
        phase(p) == "Running"
    })
    .await;
    assert!(container_pid(&h, &uid, "main").is_some());
    assert!(
        !h.leftovers().is_empty(),
        "the running pod has state on the node"
    );
    cp.pods()
        .delete("sleeper", &DeleteParams::default())
        .await
        .unwrap();
    gone(&cp, "sleeper").await;
    eventually("cgroup, netns, runtime state and directories to go", || {
        let left = h.leftovers();
        async move { left.is_empty().then_some(()) }
    })
    .await;
    assert_eq!(container_pid(&h, &uid, "main"), None);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_agent_re_adopts_running_pods_and_cleans_up_deleted_ones() {
    let h = Harness::new(RuntimeKind::Runc);
    let cp = ControlPlane::start().await;
    let node = "node-d";
    let agent = RunningAgent::start(&h, &cp.url, node);
    let sleeper = |grace: i64| {
        serde_json::json!({
            "terminationGracePeriodSeconds": grace,
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "300"]}],
        })
    };
    let kept = create(&cp, &pod("kept", node, sleeper(1))).await;
    let deleted = create(&cp, &pod("deleted", node, sleeper(1))).await;
    let forced = create(&cp, &pod("forced", node, sleeper(1))).await;
    for name in ["kept", "deleted", "forced"] {
        pod_when(&cp, name, "the pods to run", |p| phase(p) == "Running").await;
    }
    let before = pod_when(&cp, "kept", "kept's status", |_| true).await;
    let pid = container_pid(&h, &kept, "main").unwrap();
    let restarts = container_status(&before).unwrap().restart_count;

    agent.stop().await;
    // The agent is down: its pods keep running.
    assert_eq!(
        container_pid(&h, &kept, "main"),
        Some(pid),
        "stopping the agent stopped a pod"
    );
    // One pod is deleted gracefully (it waits for the agent), one is forced out of the API.
    cp.pods()
        .delete("deleted", &DeleteParams::default())
        .await
        .unwrap();
    cp.pods()
        .delete(
            "forced",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    gone(&cp, "forced").await;
    assert!(container_pid(&h, &forced, "main").is_some());
    assert!(
        cp.pods().get_opt("deleted").await.unwrap().is_some(),
        "graceful deletion waits for the agent"
    );

    let agent = RunningAgent::start(&h, &cp.url, node);
    gone(&cp, "deleted").await;
    let keep = BTreeSet::from([kept.clone()]);
    let clean = eventually("the deleted pods' state to go", || {
        let left = leftovers_except(&h, &keep);
        async move { left.is_empty().then_some(()) }
    });
    clean.await;
    assert!(container_pid(&h, &deleted, "main").is_none());
    assert!(container_pid(&h, &forced, "main").is_none());
    let after = pod_when(&cp, "kept", "kept to be running", |p| {
        phase(p) == "Running" && container_status(p).is_some_and(|c| c.ready)
    })
    .await;
    assert_eq!(
        container_pid(&h, &kept, "main"),
        Some(pid),
        "the container was restarted"
    );
    assert_eq!(container_status(&after).unwrap().restart_count, restarts);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crun_runs_a_pod_through_the_agent() {
    let h = Harness::new(RuntimeKind::Crun);
    let cp = ControlPlane::start().await;
    let node = "node-e";
    let agent = RunningAgent::start(&h, &cp.url, node);
    let spec = serde_json::json!({
        "restartPolicy": "OnFailure",
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo from crun"]}],
    });
    create(&cp, &pod("crun", node, spec)).await;
    let done = pod_when(&cp, "crun", "the crun pod to succeed", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let status = container_status(&done).unwrap();
    let id = status.container_id.unwrap_or_default();
    assert!(id.starts_with("crun://"), "{id}");
    let nodes: Api<Node> = Api::all(cp.client.clone());
    let info = nodes
        .get(node)
        .await
        .unwrap()
        .status
        .unwrap()
        .node_info
        .unwrap();
    assert!(
        info.container_runtime_version.starts_with("crun://"),
        "{info:?}"
    );
    let port = node_logs_port(&cp, node).await;
    assert_eq!(
        logs(port, logs_request("crun", "")).await.unwrap(),
        "from crun\n"
    );
    agent.stop().await;
}
