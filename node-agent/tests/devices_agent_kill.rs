//! A SIGKILLed agent holding GPU pods loses no device allocation: the real `cox agent`
//! daemon (a child process, see `common::agent_process`) runs host-network runc pods
//! with GPUs from a real `cox-nvidia-plugin --simulate` (8 simulated H100s), is
//! killed with SIGKILL and started again on the same root. Afterwards the running
//! pods keep their containers and exactly the GPUs they had, a new pod gets only the
//! GPUs nobody holds, a pod that needs more than is free waits, and it starts on the
//! GPUs a deleted pod gives back.

mod common;
mod devices_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::Harness;
use common::agent_process::{AgentProcess, AgentSpec, child_main};
use common::control_plane::{ControlPlane, eventually, phase, pod_when, ready, restarts};
use coxswain_api::k8s::{Node, Pod};
use coxswain_control_plane::nodeservice::NodeServiceConfig;
use coxswain_node_agent::runtime::RuntimeKind;
use devices_support::{Plugin, require_root};
use kube::api::{Api, DeleteParams};

/// The helper test that is the agent process.
const HELPER: &str = "agent_process";
const NODE: &str = "gpu-node";

#[test]
#[ignore = "the agent process of the kill test; does nothing without COX_TEST_AGENT_PROCESS"]
fn agent_process() {
    child_main();
}

/// A host-network pod whose one container holds `gpus` GPUs and sleeps until SIGTERM.
fn gpu_pod(gpus: u32) -> serde_json::Value {
    serde_json::json!({
        "hostNetwork": true,
        "terminationGracePeriodSeconds": 2,
        "containers": [{
            "name": "main", "image": "busybox",
            "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
            "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}},
        }],
    })
}

/// The running container of pod `name`: (container ID, the GPUs its OCI spec makes
/// visible), read from the bundle the agent wrote.
fn container_gpus(root: &Path, pod: &Pod) -> (String, BTreeSet<String>) {
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    let full_id = status
        .and_then(|s| s.first())
        .and_then(|c| c.container_id.clone())
        .expect("a running container has an ID");
    let id = full_id
        .split_once("://")
        .map_or(full_id.as_str(), |(_, id)| id);
    let config = root.join("containers").join(id).join("config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap_or_else(|e| panic!("reading {}: {e}", config.display()));
    let spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    let visible = spec["process"]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str()?.strip_prefix("NVIDIA_VISIBLE_DEVICES="))
        .flat_map(|ids| ids.split(','))
        .map(str::to_string)
        .collect();
    (full_id, visible)
}

async fn allocatable_gpus(client: &kube::Client) -> Option<String> {
    let node = Api::<Node>::all(client.clone())
        .get_opt(NODE)
        .await
        .ok()??;
    let allocatable = node.status?.allocatable?;
    Some(allocatable.get("nvidia.com/gpu")?.0.clone())
}

async fn running(cp: &ControlPlane, name: &str) -> Pod {
    pod_when(cp, name, &format!("{name} to run"), |p| {
        phase(p) == "Running" && ready(p)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkilled_agent_keeps_every_pods_gpus_and_hands_out_only_free_ones() {
    require_root();
    let h = Harness::new(RuntimeKind::Runc);
    let cp = ControlPlane::start(NodeServiceConfig::default()).await;
    cp.allow_host_pods().await; // its pods use hostNetwork
    let plugin_dir = h.dir.path().join("device-plugins");
    let _plugin = Plugin::spawn(&plugin_dir, "dgx-h100");
    let root: PathBuf = h.deps.config.root.clone();
    let spec = AgentSpec {
        server: cp.url.clone(),
        node: NODE.into(),
        root: root.clone(),
        cgroup_root: h.cgroup_root.clone(),
        runtime: "runc".into(),
        bridge: String::new(),
        dns_port: None,
        log_filter: "info".into(),
        device_plugin_dir: Some(plugin_dir.clone()),
    };
    let log = h.dir.path().join("agent.log");
    let agent = AgentProcess::spawn(HELPER, &spec, &log);
    eventually("8 allocatable GPUs on the node", || async {
        (allocatable_gpus(&cp.client).await.as_deref() == Some("8")).then_some(())
    })
    .await;

    cp.create_pod("two", NODE, gpu_pod(2)).await;
    cp.create_pod("four", NODE, gpu_pod(4)).await;
    let (two_id, two_gpus) = container_gpus(&root, &running(&cp, "two").await);
    let (four_id, four_gpus) = container_gpus(&root, &running(&cp, "four").await);
    assert_eq!((two_gpus.len(), four_gpus.len()), (2, 4));
    assert!(
        two_gpus.is_disjoint(&four_gpus),
        "{two_gpus:?} {four_gpus:?}"
    );

    agent.sigkill();
    let agent = AgentProcess::spawn(HELPER, &spec, &log);

    // The same containers, never restarted, with the same GPUs.
    for (name, id, gpus) in [("two", &two_id, &two_gpus), ("four", &four_id, &four_gpus)] {
        let pod = running(&cp, name).await;
        assert_eq!(restarts(&pod), 0, "{name} was restarted");
        assert_eq!(&container_gpus(&root, &pod), &(id.clone(), gpus.clone()));
    }
    // The restarted agent has its inventory back and knows what is held: a new pod
    // gets two of the free GPUs, and a pod needing more than remain waits.
    eventually("8 allocatable GPUs after the restart", || async {
        (allocatable_gpus(&cp.client).await.as_deref() == Some("8")).then_some(())
    })
    .await;
    cp.create_pod("late", NODE, gpu_pod(2)).await;
    let (_, late_gpus) = container_gpus(&root, &running(&cp, "late").await);
    let held: BTreeSet<String> = two_gpus.union(&four_gpus).cloned().collect();
    assert_eq!(late_gpus.len(), 2);
    assert!(
        late_gpus.is_disjoint(&held),
        "late got a held GPU: {late_gpus:?}"
    );

    cp.create_pod("greedy", NODE, gpu_pod(2)).await;
    let waiting = pod_when(&cp, "greedy", "greedy to be refused its GPUs", |p| {
        let statuses = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        let waiting = statuses
            .and_then(|s| s.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref());
        waiting.is_some_and(|w| {
            w.message
                .as_deref()
                .is_some_and(|m| m.contains("nvidia.com/gpu"))
        })
    })
    .await;
    assert_ne!(phase(&waiting), "Running");

    // Deleting "two" gives its GPUs back; "greedy" starts on exactly those.
    cp.pods()
        .delete("two", &DeleteParams::default())
        .await
        .unwrap();
    let (_, greedy_gpus) = container_gpus(&root, &running(&cp, "greedy").await);
    assert_eq!(
        greedy_gpus, two_gpus,
        "greedy got GPUs other than the freed ones"
    );
    drop(agent);
}
