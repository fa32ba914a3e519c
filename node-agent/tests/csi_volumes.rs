//! CSI volumes end to end on one node, as root: the real control plane (API server
//! and node service), the real `cox-csi` driver process, the agent with
//! `--csi-driver`, runc and busybox. Static PVs are made by the test (CreateVolume,
//! a PV with a csi source and claimRef, a claim with volumeName, both Bound).

mod common;
mod csi_support;

use std::path::PathBuf;
use std::time::Duration;

use common::Harness;
use common::control_plane::{ControlPlane, eventually, phase, pod_when};
use coxswain_control_plane::nodeservice::NodeServiceConfig;
use coxswain_node_agent::AgentConfig;
use coxswain_node_agent::agent::{AgentDaemonConfig, NodeAgent, worker_deps};
use coxswain_node_agent::runtime::RuntimeKind;
use csi_support::*;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use tokio_util::sync::CancellationToken;

const NODE: &str = "csi-node";

fn start_agent(h: &Harness, url: &str, driver: &DriverProcess) -> CancellationToken {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
    let mut config = AgentConfig::new(h.deps.config.root.clone());
    config.cgroup_root = h.cgroup_root.clone();
    config.backoff_initial = Duration::from_secs(1);
    config.backoff_max = Duration::from_secs(2);
    let shim = PathBuf::from(env!("CARGO_BIN_EXE_coxswain-shim"));
    let deps = worker_deps(&config, Some(RuntimeKind::Runc), shim).unwrap();
    let mut daemon = AgentDaemonConfig::new(url, NODE);
    daemon.logs_listen = "127.0.0.1:0".parse().unwrap();
    daemon.lease_interval = Duration::from_secs(1);
    daemon.csi_drivers = vec![driver.flag().parse().unwrap()];
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move { NodeAgent::new(daemon, deps).run(stop).await.unwrap() });
    shutdown
}

async fn delete_and_wait(cp: &ControlPlane, name: &str) {
    cp.pods()
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let pods = cp.pods();
    eventually(&format!("pod {name} to be removed by the agent"), || {
        let pods = pods.clone();
        async move { pods.get_opt(name).await.unwrap().is_none().then_some(()) }
    })
    .await;
}

fn waiting_message(pod: &k8s_openapi::api::core::v1::Pod) -> String {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone());
    statuses
        .and_then(|s| s.first().cloned())
        .and_then(|c| c.state)
        .and_then(|s| s.waiting)
        .and_then(|w| w.message)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_is_written_read_back_by_a_new_pod_and_its_capacity_is_enforced() {
    let h = Harness::new(RuntimeKind::Runc);
    let driver = DriverProcess::start(h.dir.path(), NODE);
    let mut csi = driver.client().await;
    let cp = ControlPlane::start(NodeServiceConfig::default()).await;
    let volume = create_volume(&mut csi, "data-volume", 16).await;
    bind_static(&cp.client, "data", "pv-data", &volume, "16Mi").await;
    let agent = start_agent(&h, &cp.url, &driver);

    // The Node announces the driver as kubelet does.
    let nodes: Api<Node> = Api::all(cp.client.clone());
    let annotation = eventually("the CSI node ID annotation", || {
        let nodes = nodes.clone();
        async move {
            let node = nodes.get_opt(NODE).await.ok()??;
            node.metadata
                .annotations?
                .get("csi.volume.kubernetes.io/nodeid")
                .cloned()
        }
    })
    .await;
    assert_eq!(annotation, format!(r#"{{"{DRIVER}":"{NODE}"}}"#));

    // Writes a file, then writing 32 MiB into the 16 MiB claim fails with ENOSPC.
    let writer = "echo hello > /data/hello && sync && \
        if dd if=/dev/zero of=/data/big bs=1M count=32 2>/tmp/err; then exit 3; fi; \
        grep -q 'No space left on device' /tmp/err || exit 4; rm /data/big";
    let uid = cp
        .create_pod("writer", NODE, claim_pod("data", writer))
        .await;
    let pod = pod_when(&cp, "writer", "the writer to finish", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    assert_eq!(phase(&pod), "Succeeded", "{:#?}", pod.status);
    let staging_root = h.deps.config.root.join("csi/staging");
    assert!(
        !mounts_containing(&uid).is_empty(),
        "published while the pod exists"
    );
    delete_and_wait(&cp, "writer").await;
    assert_eq!(mounts_containing(&uid), Vec::<String>::new());
    assert_eq!(
        mounts_containing(&staging_root.to_string_lossy()),
        Vec::<String>::new(),
        "unstaged after the last pod"
    );
    assert_eq!(loops_under(&driver.state), Vec::<String>::new());

    // A new pod reads the data back (staged again).
    let reader = "test \"$(cat /data/hello)\" = hello";
    cp.create_pod("reader", NODE, claim_pod("data", reader))
        .await;
    let pod = pod_when(&cp, "reader", "the reader to finish", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    assert_eq!(phase(&pod), "Succeeded", "{:#?}", pod.status);
    delete_and_wait(&cp, "reader").await;

    // A claim that does not exist yet: the pod waits, naming it; once the claim is
    // bound (and a newer pod event carries it) the pod runs.
    cp.create_pod("waiter", NODE, claim_pod("late", "test -d /data"))
        .await;
    let pod = pod_when(&cp, "waiter", "the waiter to name its claim", |p| {
        waiting_message(p).contains("persistentvolumeclaim \"late\" not found")
    })
    .await;
    assert_eq!(phase(&pod), "Pending");
    let late = create_volume(&mut csi, "late-volume", 8).await;
    bind_static(&cp.client, "late", "pv-late", &late, "8Mi").await;
    let touch = Patch::Merge(serde_json::json!({"metadata": {"labels": {"claim": "bound"}}}));
    cp.pods()
        .patch("waiter", &PatchParams::default(), &touch)
        .await
        .unwrap();
    let pod = pod_when(&cp, "waiter", "the waiter to run", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    assert_eq!(phase(&pod), "Succeeded", "{:#?}", pod.status);
    delete_and_wait(&cp, "waiter").await;

    assert_eq!(
        mounts_containing(&h.dir.path().to_string_lossy()),
        Vec::<String>::new()
    );
    assert_eq!(loops_under(&driver.state), Vec::<String>::new());
    let journal = std::fs::read_to_string(h.deps.config.root.join("csi/journal.json")).unwrap();
    let journal: serde_json::Value = serde_json::from_str(&journal).unwrap();
    assert_eq!(journal, serde_json::json!({"staged": {}, "published": {}}));
    agent.cancel();
}

async fn node_annotation(nodes: &Api<Node>) -> Option<Option<String>> {
    let node = nodes.get_opt(NODE).await.ok()??;
    Some(
        node.metadata
            .annotations
            .unwrap_or_default()
            .get("csi.volume.kubernetes.io/nodeid")
            .cloned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_driver_that_comes_up_late_is_announced_by_registering_again() {
    let h = Harness::new(RuntimeKind::Runc);
    let cp = ControlPlane::start(NodeServiceConfig::default()).await;
    // The driver's socket is not there yet: the agent registers without it.
    let late_dir = h.dir.path().join("late");
    std::fs::create_dir_all(&late_dir).unwrap();
    let socket_flag = format!("{DRIVER}=unix://{}", late_dir.join("csi.sock").display());
    let nodes: Api<Node> = Api::all(cp.client.clone());
    let mut config = AgentConfig::new(h.deps.config.root.clone());
    config.cgroup_root = h.cgroup_root.clone();
    let shim = PathBuf::from(env!("CARGO_BIN_EXE_coxswain-shim"));
    let deps = worker_deps(&config, Some(RuntimeKind::Runc), shim).unwrap();
    let mut daemon = AgentDaemonConfig::new(cp.url.clone(), NODE);
    daemon.logs_listen = "127.0.0.1:0".parse().unwrap();
    daemon.csi_drivers = vec![socket_flag.parse().unwrap()];
    daemon.csi_wait = Duration::from_millis(200);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move { NodeAgent::new(daemon, deps).run(stop).await.unwrap() });
    let first = eventually("the node to register", || {
        let nodes = nodes.clone();
        async move { node_annotation(&nodes).await }
    })
    .await;
    assert_eq!(
        first.as_deref(),
        Some("{}"),
        "registered before the driver was up"
    );
    let driver = DriverProcess::start(&late_dir, NODE);
    let announced = eventually("the late driver on the Node", || {
        let nodes = nodes.clone();
        async move {
            node_annotation(&nodes)
                .await
                .flatten()
                .filter(|a| a != "{}")
        }
    })
    .await;
    assert_eq!(announced, format!(r#"{{"{DRIVER}":"{NODE}"}}"#));
    drop(driver);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inline_ephemeral_volume_lives_exactly_as_long_as_its_pod() {
    let h = Harness::new(RuntimeKind::Runc);
    let driver = DriverProcess::start(h.dir.path(), NODE);
    let cp = ControlPlane::start(NodeServiceConfig::default()).await;
    let agent = start_agent(&h, &cp.url, &driver);

    // A pod's inline `csi` volume of 8 MiB: created on publish, a hard limit like a
    // claim's, the pod's identity in its volume context.
    let script = "echo scratch > /scratch/file && \
        if dd if=/dev/zero of=/scratch/big bs=1M count=16 2>/tmp/err; then exit 3; fi; \
        grep -q 'No space left on device' /tmp/err";
    let uid = cp
        .create_pod(
            "scratcher",
            NODE,
            serde_json::json!({
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "main", "image": "busybox", "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                }],
                "volumes": [{"name": "scratch", "csi": {
                    "driver": DRIVER, "volumeAttributes": {"size": "8Mi"},
                }}],
            }),
        )
        .await;
    let pod = pod_when(&cp, "scratcher", "the scratcher to finish", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    assert_eq!(phase(&pod), "Succeeded", "{:#?}", pod.status);
    assert!(
        !mounts_containing(&uid).is_empty(),
        "published while the pod exists"
    );
    let images = || {
        std::fs::read_dir(driver.state.join("images"))
            .map(|d| d.flatten().count())
            .unwrap_or(0)
    };
    assert_eq!(images(), 1, "the driver made the volume on publish");

    // The pod goes: unpublished, and the driver deletes the volume with it.
    delete_and_wait(&cp, "scratcher").await;
    assert_eq!(mounts_containing(&uid), Vec::<String>::new());
    assert_eq!(loops_under(&driver.state), Vec::<String>::new());
    assert_eq!(images(), 0, "the volume went with its pod");
    let journal = std::fs::read_to_string(h.deps.config.root.join("csi/journal.json")).unwrap();
    let journal: serde_json::Value = serde_json::from_str(&journal).unwrap();
    assert_eq!(journal, serde_json::json!({"staged": {}, "published": {}}));
    agent.cancel();
}
