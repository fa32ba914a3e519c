//! The PyTorchJob form of the example training job end to end: `examples/pytorchjob.yaml`
//! (a Kubeflow `kubeflow.org/v1` manifest, applied unchanged except for where its
//! checkpoints go) runs on a one-machine cluster of the built binaries — `cox server`,
//! `cox-nvidia-plugin --simulate`, `cox agent` with runc and CNI — as a TrainingJob, with
//! Kubeflow's env (`MASTER_ADDR=pytorch-trainer-master-0`, resolved through the per-replica
//! service), to `Succeeded` with rank 0's loss falling. Needs root, runc and the CNI
//! plugins, like the agent's tests; `scripts/setup.sh` installs them.

mod e2e_support;

use std::time::Duration;

use e2e_support::{Cluster, Layout, epochs, is_true, point_host_paths};
use serde_json::Value;

const EXAMPLE: &str = include_str!("../../examples/pytorchjob.yaml");
const JOBS: &str = "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs";
const JOB: &str = "pytorch-trainer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pytorchjob_example_trains_to_success_with_kubeflow_env() {
    let cluster = Cluster::start(&Layout {
        node: "e2e-pytorchjob",
        cluster_cidr: "10.231.0.0/16",
        bridge: "coxpt0",
    })
    .await;
    cluster.create_trainer_config_map().await;
    cluster.allow_host_pods().await; // the checkpoints are a hostPath
    let mut job: Value = yaml_serde::from_str(EXAMPLE).expect("the example is YAML");
    point_host_paths(&mut job, "checkpoints", &cluster.checkpoints(JOB));
    cluster.create(JOBS, &job).await;

    let job_path = format!("{JOBS}/{JOB}");
    let finished = cluster
        .wait_for(
            "the PyTorchJob to finish",
            Duration::from_secs(300),
            || async {
                let (_, job) = cluster.get(&job_path).await;
                (is_true(&job, "Succeeded") || is_true(&job, "Failed")).then_some(job)
            },
        )
        .await;
    let master_log = cluster.log("default", "pytorch-trainer-master-0").await;
    let context = format!(
        "status: {:#}\n--- rank 0's log\n{master_log}\n{}",
        finished["status"],
        cluster.logs()
    );
    assert!(is_true(&finished, "Succeeded"), "{context}");
    let status = &finished["status"];
    assert_eq!(
        status["replicaStatuses"]["Master"]["succeeded"], 1,
        "{context}"
    );
    assert!(status["startTime"].is_string() && status["completionTime"].is_string());
    assert!(is_true(&finished, "Created"), "{context}");

    // Kubeflow's env held in the pods: the master is rank 0 of 2 at its short name.
    let (_, training) = cluster
        .get("/apis/coxswain.dev/v1alpha1/namespaces/default/trainingjobs/pytorch-trainer")
        .await;
    assert_eq!(
        training["metadata"]["ownerReferences"][0]["kind"], "PyTorchJob",
        "{training}"
    );
    let (_, master) = cluster
        .get("/api/v1/namespaces/default/pods/pytorch-trainer-master-0")
        .await;
    let env: Vec<(String, String)> = master["spec"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (name, value) in [
        ("MASTER_ADDR", "pytorch-trainer-master-0"),
        ("MASTER_PORT", "23456"),
        ("RANK", "0"),
        ("WORLD_SIZE", "2"),
    ] {
        assert!(
            env.contains(&(name.to_string(), value.to_string())),
            "{name}={value} in {env:?}"
        );
    }
    let gpus = master["metadata"]["annotations"]["coxswain.dev/gpu-devices"]
        .as_str()
        .map_or(0, |g| g.matches("GPU-").count());
    assert_eq!(gpus, 4, "the master got its four GPUs: {master}");

    // Rank 0 trained every epoch with rank 1 and the loss fell.
    let losses = epochs(&master_log, 0);
    assert_eq!(losses.len(), 20, "{context}");
    assert!(master_log.contains("result: loss="), "{context}");
    let (first, last) = (losses[0].1, losses[losses.len() - 1].1);
    assert!(last < first / 10.0, "the loss fell: {losses:?}");
    assert!(master_log.contains("rank 0/2 "), "two ranks: {context}");

    cluster.delete_and_drain(&job_path).await;
}
