//! Gang restart end to end: the example TrainingJob (`examples/trainingjob-trainer.yaml`,
//! two workers with four simulated GPUs each and a hostPath checkpoint volume) runs on a
//! one-machine cluster of the built binaries; mid-run the test kills worker 1's trainer
//! process with SIGKILL (found through its pod's cgroup). The controller restarts the whole
//! gang, which resumes from rank 0's last checkpoint — the epoch counter continues instead
//! of starting over — and the job succeeds with `restarts: 1`, a `Restarting` condition in
//! its history, and events naming the killed pod. Needs root, runc and the CNI plugins.

mod e2e_support;

use std::path::Path;
use std::time::Duration;

use e2e_support::{Cluster, Layout, condition, drop_dataset, epochs, is_true, point_host_paths};
use serde_json::Value;

const EXAMPLE: &str = include_str!("../../examples/trainingjob-trainer.yaml");
const JOBS: &str = "/apis/coxswain.dev/v1alpha1/namespaces/default/trainingjobs";
const JOB: &str = "trainer";

/// The epoch of rank 0's last checkpoint, if one was written.
fn checkpoint_epoch(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("checkpoint.json")).ok()?;
    serde_json::from_str::<Value>(&text).ok()?["epoch"].as_u64()
}

/// The processes whose cgroup is pod `uid`'s and whose command line runs `train.py`.
fn trainer_processes(uid: &str) -> Vec<u32> {
    let pod_cgroup = format!("pod{uid}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cgroup.contains(&pod_cgroup) && cmdline.contains("train.py") {
            found.push(pid);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_restarts_the_gang_from_its_checkpoint() {
    let cluster = Cluster::start(&Layout {
        node: "e2e-gang-restart",
        cluster_cidr: "10.232.0.0/16",
        bridge: "coxgr0",
    })
    .await;
    cluster.create_trainer_config_map().await;
    cluster.allow_host_pods().await; // the checkpoints are a hostPath
    let checkpoints = cluster.checkpoints(JOB);
    let mut job: Value = yaml_serde::from_str(EXAMPLE).expect("the example is YAML");
    point_host_paths(&mut job, "checkpoints", &checkpoints);
    drop_dataset(&mut job);
    cluster.create(JOBS, &job).await;
    let job_path = format!("{JOBS}/{JOB}");

    // Mid-run: rank 0 has checkpointed a few epochs.
    let before_kill = cluster
        .wait_for(
            "rank 0's third checkpoint",
            Duration::from_secs(180),
            || async { checkpoint_epoch(&checkpoints).filter(|epoch| *epoch >= 3) },
        )
        .await;
    let (_, worker) = cluster
        .get("/api/v1/namespaces/default/pods/trainer-worker-1")
        .await;
    let uid = worker["metadata"]["uid"]
        .as_str()
        .expect("a uid")
        .to_string();
    let pids = trainer_processes(&uid);
    assert_eq!(
        pids.len(),
        1,
        "worker 1's trainer process: {pids:?}\n{}",
        cluster.logs()
    );
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());

    let finished = cluster
        .wait_for("the job to finish", Duration::from_secs(300), || async {
            let (_, job) = cluster.get(&job_path).await;
            (is_true(&job, "Succeeded") || is_true(&job, "Failed")).then_some(job)
        })
        .await;
    let rank0_log = cluster.log("default", "trainer-worker-0").await;
    let (_, events) = cluster
        .get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dtrainer")
        .await;
    let context = format!(
        "status: {:#}\n--- rank 0's log after the restart\n{rank0_log}\n--- events\n{events:#}\n{}",
        finished["status"],
        cluster.logs()
    );
    assert!(is_true(&finished, "Succeeded"), "{context}");
    assert_eq!(finished["status"]["restarts"], 1, "{context}");
    let restarting = condition(&finished, "Restarting").expect("a Restarting condition");
    assert_eq!(restarting["status"], "False", "recovered: {context}");

    // The new gang resumed after the last checkpoint instead of starting over.
    let resumed: u64 = rank0_log
        .lines()
        .find_map(|l| l.strip_prefix("rank 0/2 resumed from epoch "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("rank 0 did not resume from a checkpoint\n{context}"));
    assert!(
        resumed >= before_kill,
        "resumed from {resumed}, checkpointed {before_kill}"
    );
    let after = epochs(&rank0_log, 0);
    let first = after.first().expect("epochs after the restart").0;
    assert_eq!(u64::from(first), resumed + 1, "{context}");
    assert_eq!(after.last().unwrap().0, 20, "{context}");
    assert!(rank0_log.contains("result: loss="), "{context}");

    // The events tell the story: the killed pod and its exit, the gang's recreation.
    let items = events["items"].as_array().cloned().unwrap_or_default();
    let event = |reason: &str| {
        items
            .iter()
            .find(|e| e["reason"] == reason && e["involvedObject"]["kind"] == "TrainingJob")
    };
    let restart = event("GangRestart").unwrap_or_else(|| panic!("a GangRestart event\n{context}"));
    assert_eq!(restart["type"], "Warning");
    assert!(
        restart["message"]
            .as_str()
            .is_some_and(|m| m.contains("pod trainer-worker-1 failed with exit code 137")),
        "the event names the killed pod and its exit: {restart}"
    );
    for reason in [
        "GangRecreated",
        "Succeeded",
        "SuccessfulCreate",
        "SuccessfulDelete",
    ] {
        assert!(event(reason).is_some(), "a {reason} event\n{context}");
    }

    cluster.delete_and_drain(&job_path).await;
}
