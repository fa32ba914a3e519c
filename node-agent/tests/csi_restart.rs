//! CSI mounts survive the agent's death and a host reboot without leaking, as
//! root: the agent is a child process (`common::agent_process`) SIGKILLed and
//! started again on the same root, next to the real `cox-csi` and control plane.
//!
//! 1. Killed while three pods run; two are deleted while it is down, and one of
//!    them had been unpublished but not unstaged (the journal and the driver as an
//!    agent killed between NodeUnpublish and NodeUnstage leaves them). The new
//!    agent unpublishes and unstages what they used; the third pod keeps its mount.
//! 2. A simulated reboot (agent and driver killed, containers killed, every mount
//!    and loop device gone) with a pod deleted while the host was down: the kept
//!    pod is staged, published and started again with its data; nothing of the
//!    deleted one is left in the journal, `/proc/self/mountinfo` or `losetup -a`.

mod common;
mod csi_support;

use common::Harness;
use common::agent_process::{AgentProcess, AgentSpec, CSI_ENV, child_main};
use common::control_plane::{ControlPlane, eventually, pod_when, ready, restarts};
use common::node_state::simulate_reboot;
use coxswain_control_plane::nodeservice::NodeServiceConfig;
use coxswain_node_agent::csi::MountJournal;
use coxswain_node_agent::runtime::RuntimeKind;
use coxswain_proto::csi::v1::NodeUnpublishVolumeRequest;
use csi_support::*;
use kube::api::DeleteParams;

const NODE: &str = "csi-restart";
const HELPER: &str = "agent_process";

#[test]
#[ignore = "the agent process of the CSI restart test; does nothing without COX_TEST_AGENT_PROCESS"]
fn agent_process() {
    child_main();
}

fn long_running(claim: &str) -> serde_json::Value {
    let mut spec = claim_pod(
        claim,
        "test -f /data/keep || echo kept > /data/keep; exec sleep 3600",
    );
    spec["restartPolicy"] = "Always".into();
    spec
}

async fn running(cp: &ControlPlane, name: &str) -> String {
    let pod = pod_when(cp, name, &format!("{name} to run"), ready).await;
    pod.metadata.uid.unwrap()
}

async fn force_delete(cp: &ControlPlane, name: &str) {
    cp.pods()
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let pods = cp.pods();
    eventually(&format!("{name} gone from the API"), || {
        let pods = pods.clone();
        async move { pods.get_opt(name).await.unwrap().is_none().then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mounts_of_deleted_pods_are_cleaned_after_a_sigkill_and_a_reboot() {
    let h = Harness::new(RuntimeKind::Runc);
    let root = h.deps.config.root.clone();
    let journal_path = root.join("csi/journal.json");
    let mut driver = DriverProcess::start(h.dir.path(), NODE);
    let mut csi = driver.client().await;
    let cp = ControlPlane::start(NodeServiceConfig::default()).await;
    let shared = create_volume(&mut csi, "shared", 16).await;
    bind_static(&cp.client, "shared", "pv-shared", &shared, "16Mi").await;
    let scratch = create_volume(&mut csi, "scratch", 16).await;
    bind_static(&cp.client, "scratch", "pv-scratch", &scratch, "16Mi").await;
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
    let spawn = |driver: &DriverProcess| {
        AgentProcess::spawn_with_env(HELPER, &spec, &log, &[(CSI_ENV, driver.flag())])
    };
    let agent = spawn(&driver);
    cp.create_pod("keep", NODE, long_running("shared")).await;
    cp.create_pod("gone", NODE, long_running("shared")).await;
    cp.create_pod("scratch", NODE, long_running("scratch"))
        .await;
    let keep = running(&cp, "keep").await;
    let gone = running(&cp, "gone").await;
    let half = running(&cp, "scratch").await;

    // 1. SIGKILL; "gone" and "scratch" deleted while the agent is down; the
    // scratch pod's teardown stopped between unpublish and unstage.
    agent.sigkill();
    force_delete(&cp, "gone").await;
    force_delete(&cp, "scratch").await;
    let mut journal = MountJournal::load(&journal_path).unwrap();
    let publication = journal.published.remove(&format!("{half}/data")).unwrap();
    csi.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: publication.volume_id.clone(),
            target_path: publication.target.display().to_string(),
        })
        .await
        .unwrap();
    journal.save(&journal_path).unwrap();
    let scratch_staging = journal
        .staged
        .values()
        .find(|s| s.volume_id == scratch)
        .unwrap()
        .staging_path
        .clone();
    let scratch_image = driver.state.join(format!("images/{scratch}.img"));
    assert!(!mounts_containing(&scratch_staging.to_string_lossy()).is_empty());
    assert!(!loops_under(&scratch_image).is_empty());

    let agent = spawn(&driver);
    eventually(
        "the deleted pods' mounts and the unused stage to go",
        || {
            let done = mounts_containing(&gone).is_empty()
                && mounts_containing(&half).is_empty()
                && mounts_containing(&scratch_staging.to_string_lossy()).is_empty()
                && loops_under(&scratch_image).is_empty();
            async move { done.then_some(()) }
        },
    )
    .await;
    assert!(
        !mounts_containing(&keep).is_empty(),
        "the kept pod keeps its volume"
    );
    let journal = MountJournal::load(&journal_path).unwrap();
    assert_eq!(
        journal.published.keys().cloned().collect::<Vec<_>>(),
        [format!("{keep}/data")]
    );
    assert_eq!(journal.staged.len(), 1);
    let pod = cp.pods().get("keep").await.unwrap();
    assert_eq!(restarts(&pod), 0, "re-adopted, not restarted");

    // 2. A reboot; "gone2" deleted while the host was down.
    cp.create_pod("gone2", NODE, long_running("shared")).await;
    let gone2 = running(&cp, "gone2").await;
    agent.sigkill();
    driver.kill();
    force_delete(&cp, "gone2").await;
    simulate_reboot(h.dir.path(), &h.cgroup_root, "cox-csi-no-bridge");
    detach_loops_under(&driver.state);
    assert_eq!(
        mounts_containing(&h.dir.path().to_string_lossy()),
        Vec::<String>::new()
    );
    assert_eq!(loops_under(&driver.state), Vec::<String>::new());

    let driver = DriverProcess::start(h.dir.path(), NODE);
    driver.client().await;
    let agent = spawn(&driver);
    let pod = pod_when(
        &cp,
        "keep",
        "the kept pod to run again after the reboot",
        |p| ready(p) && restarts(p) >= 1,
    )
    .await;
    assert!(ready(&pod));
    eventually("the deleted pod to leave the journal", || {
        let journal = MountJournal::load(&journal_path).unwrap();
        let done =
            journal.published.keys().cloned().collect::<Vec<_>>() == [format!("{keep}/data")];
        async move { done.then_some(()) }
    })
    .await;
    assert_eq!(mounts_containing(&gone2), Vec::<String>::new());
    let data = root.join(format!("pods/{keep}/volumes/data/keep"));
    assert_eq!(
        std::fs::read_to_string(&data).unwrap(),
        "kept\n",
        "data kept through the reboot"
    );

    // Deleting the last pod unpublishes and unstages: nothing mounted, nothing attached.
    cp.pods()
        .delete("keep", &DeleteParams::default())
        .await
        .unwrap();
    eventually("everything unmounted and detached", || {
        let done = mounts_containing(&h.dir.path().to_string_lossy()).is_empty()
            && loops_under(&driver.state).is_empty()
            && MountJournal::load(&journal_path).unwrap() == MountJournal::default();
        async move { done.then_some(()) }
    })
    .await;
    agent.sigkill();
}
