//! Pods the control plane ended while their node was away are stopped when the agent
//! comes back: the real `cox agent` daemon (a child process, see
//! `common::agent_process`) runs host-network runc pods; it is SIGKILLed, the control
//! plane's node lifecycle loop finds its lease expired and fails the pods that
//! tolerate no unreachable time (`Failed`, `NodeLost`, `DisruptionTarget`), and the
//! agent started again on the same root stops and removes those pods' containers and
//! never starts them again, while the objects stay `Failed`. A pod that finished on
//! the node by itself keeps its logs.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Harness;
use common::agent_process::{AgentProcess, AgentSpec, child_main};
use common::control_plane::{ControlPlane, eventually, phase, pod_when, ready};
use common::node_state::{names_in, runtime_containers};
use coxswain_control_plane::nodeservice::{NodeServiceConfig, lifecycle};
use coxswain_node_agent::runtime::RuntimeKind;
use tokio_util::sync::CancellationToken;

/// The helper test that is the agent process.
const HELPER: &str = "agent_process";
const NODE: &str = "away-node";

#[test]
#[ignore = "the agent process of the ended-pods test; does nothing without COX_TEST_AGENT_PROCESS"]
fn agent_process() {
    child_main();
}

/// A host-network pod running `script`; `tolerated` seconds on an unreachable node.
fn pod(script: &str, restart: &str, tolerated: Option<i64>) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "hostNetwork": true,
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}],
    });
    if let Some(seconds) = tolerated {
        spec["tolerations"] = serde_json::json!([
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": seconds},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": seconds},
        ]);
    }
    spec
}

const SLEEPER: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// Whether the runtime still has a container of pod `uid`.
fn has_container(state: &Path, uid: &str) -> bool {
    runtime_containers("runc", state)
        .iter()
        .any(|id| id.starts_with(&format!("{uid}_")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_returning_agent_stops_the_pods_the_control_plane_failed_while_it_was_away() {
    let h = Harness::new(RuntimeKind::Runc);
    let grace = Duration::from_secs(2);
    let config = NodeServiceConfig {
        lease_grace: grace,
        ..NodeServiceConfig::default()
    };
    let cp = ControlPlane::start(config).await;
    cp.allow_host_pods().await; // its pods use hostNetwork
    let stop_lifecycle = CancellationToken::new();
    tokio::spawn(lifecycle::run(
        cp.client.clone(),
        grace,
        stop_lifecycle.clone(),
    ));
    let root = h.deps.config.root.clone();
    let state = h.deps.config.runtime_state_dir();
    let spec = AgentSpec {
        server: cp.url.clone(),
        node: NODE.into(),
        root: root.clone(),
        cgroup_root: h.cgroup_root.clone(),
        runtime: "runc".into(),
        bridge: String::new(),
        dns_port: None,
        log_filter: "info".into(),
        device_plugin_dir: None,
    };
    let log = h.dir.path().join("agent.log");
    let agent = AgentProcess::spawn(HELPER, &spec, &log);

    let lost = cp
        .create_pod("lost", NODE, pod(SLEEPER, "Always", Some(0)))
        .await;
    let patient = cp
        .create_pod("patient", NODE, pod(SLEEPER, "Always", None))
        .await;
    let finished = cp
        .create_pod("finished", NODE, pod("echo done", "Never", Some(0)))
        .await;
    for name in ["lost", "patient"] {
        pod_when(&cp, name, &format!("{name} to run"), |p| {
            phase(p) == "Running" && ready(p)
        })
        .await;
    }
    pod_when(&cp, "finished", "finished to succeed", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    assert!(has_container(&state, &lost));

    // The node goes away; the control plane fails the pod that tolerates nothing.
    agent.sigkill();
    let failed = pod_when(&cp, "lost", "lost to be failed by the control plane", |p| {
        phase(p) == "Failed"
    })
    .await;
    let status = failed.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("NodeLost"));
    assert!(
        has_container(&state, &lost),
        "nothing stops it while the agent is away"
    );

    // The agent comes back: the failed pod's container is stopped and everything of it
    // removed; the pod that tolerates the outage (300 s) keeps running.
    let agent = AgentProcess::spawn(HELPER, &spec, &log);
    eventually("the failed pod's container to be stopped", || async {
        let gone = !has_container(&state, &lost) && !names_in(&root.join("pods")).contains(&lost);
        gone.then_some(())
    })
    .await;
    let patient_pod = pod_when(&cp, "patient", "patient to be ready again", |p| {
        phase(p) == "Running" && ready(p)
    })
    .await;
    assert_eq!(patient_pod.metadata.uid.as_deref(), Some(patient.as_str()));
    assert!(has_container(&state, &patient));

    // The object stays Failed (the agent's reports never bring it back), and a pod
    // that finished here keeps its logs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lost_now = cp.pods().get("lost").await.unwrap();
    assert_eq!(phase(&lost_now), "Failed");
    assert!(
        !has_container(&state, &lost),
        "the failed pod was started again"
    );
    assert!(
        root.join("pods").join(&finished).join("logs").is_dir(),
        "the finished pod's logs were removed"
    );
    stop_lifecycle.cancel();
    drop(agent);
}
