//! `cox demo`: the main job. It brings up a one-machine cluster — `cox server` (API, node
//! service, scheduler, controllers) on the embedded store, the NVIDIA device plugin (real GPUs
//! through NVML when a driver is loaded, otherwise simulated GPUs, said plainly), the CSI
//! driver `cox-csi` (node-local volumes), and `cox agent` running pods with runc and the CNI
//! plugins — then submits the example TrainingJob (`examples/trainingjob-trainer.yaml`: two
//! workers, four GPUs each, a TCP all-reduce in plain Python, checkpoints on a CSI volume
//! claimed by `examples/trainer-volumes.yaml`) and follows it: phases, the loss lines of
//! rank 0, the result.
//!
//! The cluster keeps running afterwards until Ctrl-C; `--exit` stops it after the job and
//! exits 0 only if the job succeeded. Running it twice is safe: the second run replaces the
//! previous job. Each daemon is a child process with its log in `<data-dir>/logs/`.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use coxswain_control_plane::sim::openb::{
    self, PolicyKind, RunSummary, Workload, replay,
    trace::{read_nodes, read_pods},
};
use reqwest::Method;
use serde_json::{Value, json};

use super::api_client::{ApiClient, Target};
use super::apply::apply_value;
use super::token::create_bootstrap_token;

/// `println!` that never panics: the demo keeps going, and stops its cluster cleanly, when
/// whoever reads its output has gone (`cox demo | head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod daemons;
mod volumes;

use daemons::{Daemons, cox_binary, free_or, sibling_binary, wait_for_api, wait_for_node};
use volumes::{delete_volumes, show_checkpoint_volume, wait_for_dataset};

/// The trainer the example job runs, delivered to its pods in a ConfigMap.
const TRAINER_PY: &str = include_str!("../../../../examples/trainer/train.py");
/// The example TrainingJob.
const TRAINING_JOB: &str = include_str!("../../../../examples/trainingjob-trainer.yaml");
/// Its name and namespace, as the manifest has them.
const JOB: &str = "trainer";
const NAMESPACE: &str = "default";
/// The example job's StorageClass, checkpoint and dataset claims, and the dataset Job.
const TRAINER_VOLUMES: &str = include_str!("../../../../examples/trainer-volumes.yaml");
/// The claims' and the dataset Job's names, as the manifest has them.
const CHECKPOINT_CLAIM: &str = "trainer-checkpoints";
const DATASET_CLAIM: &str = "trainer-dataset";
const DATASET_JOB: &str = "trainer-dataset";
/// The CSI driver's name.
const CSI_DRIVER: &str = "csi.coxswain.dev";

/// Arguments of `cox demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Directory for the demo cluster: store, agent state, kubeconfig, daemon logs.
    #[arg(long, default_value = "/var/lib/coxswain/demo")]
    pub data_dir: PathBuf,
    /// Address of the API (TLS); a free loopback port is used when this one is taken.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Simulated GPU topology served when no NVIDIA driver is found.
    #[arg(long, default_value = "dgx-h100")]
    pub simulate: String,
    /// OCI runtime for the agent (runc or crun; detected when absent).
    #[arg(long)]
    pub runtime: Option<String>,
    /// Stop after the job instead of serving until Ctrl-C; exit 0 only if it succeeded.
    #[arg(long)]
    pub exit: bool,
    /// Give up on the job after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// Runs `cox demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    say!("coxswain demo: a one-machine GPU cluster running a distributed training job\n");
    let logs = args.data_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut daemons = Daemons::default();

    // 1. The control plane, over TLS: a cluster CA and serving certificate made on first
    // start, clients authenticated and authorized by RBAC. (Its plain loopback listener
    // takes a free port; the demo does not use it.)
    let listen = free_or(args.listen);
    let url = format!("https://{listen}");
    let server_dir = args.data_dir.join("server");
    daemons.start(
        "server",
        Command::new(cox_binary()?)
            .arg("server")
            .arg("--data-dir")
            .arg(&server_dir)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--secure-listen")
            .arg(listen.to_string()),
        &logs,
    )?;
    let kubeconfig = server_dir.join("admin.kubeconfig");
    let client = wait_for_api(&kubeconfig, &mut daemons).await?;
    step(&format!(
        "control plane: API and node service on {url} (TLS, cluster CA in {}), embedded store in {}",
        server_dir.join("pki").display(),
        server_dir.join("store").display()
    ));

    // 2. The GPUs: real ones when the NVIDIA driver answers, simulated ones otherwise.
    let agent_root = args.data_dir.join("agent");
    let plugin_dir = agent_root.join("device-plugins");
    std::fs::create_dir_all(&plugin_dir)?;
    let plugin = sibling_binary("cox-nvidia-plugin")?;
    let real_gpus = Command::new(&plugin)
        .arg("--list")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // The plugin's DCGM-style metrics on a free loopback port, relayed by the agent
    // (`--gpu-metrics-url`) for `cox top gpus`.
    let gpu_metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("picking a port for the GPU plugin's metrics")?;
    let mut plugin_cmd = Command::new(&plugin);
    plugin_cmd.arg("--plugin-dir").arg(&plugin_dir);
    plugin_cmd.args(["--metrics-listen", &gpu_metrics.to_string()]);
    if real_gpus {
        step("GPUs: NVIDIA driver found, serving the real GPUs through NVML");
    } else {
        plugin_cmd.arg("--simulate").arg(&args.simulate);
        step(&format!(
            "GPUs: no NVIDIA driver here, so the device plugin serves SIMULATED GPUs \
             ({} topology); they go through the same device-plugin, scheduler and agent paths",
            args.simulate
        ));
    }
    daemons.start("nvidia-plugin", &mut plugin_cmd, &logs)?;

    // 3. The CSI driver: node-local volumes (ext4 images on loop devices) for the claims.
    let node = "demo-node";
    let csi_socket = args.data_dir.join("csi").join("csi.sock");
    daemons.start(
        "csi",
        Command::new(sibling_binary("cox-csi")?)
            .arg("--endpoint")
            .arg(format!("unix://{}", csi_socket.display()))
            .args(["--node-id", node, "--capacity", "4Gi", "--state-dir"])
            .arg(args.data_dir.join("csi-state")),
        &logs,
    )?;
    step(&format!(
        "volumes: CSI driver {CSI_DRIVER} (cox-csi) on {}, 4Gi of node-local volumes",
        csi_socket.display()
    ));

    // 4. The node agent: it joins with a bootstrap token, as `kubeadm join` does, and gets
    // its own node certificate (system:node:<name>) signed; a later run reuses it.
    let token = create_bootstrap_token(&client, Duration::from_secs(3600), "", "cox demo")
        .await
        .context("creating a bootstrap token for the agent")?;
    let mut agent_cmd = Command::new(cox_binary()?);
    agent_cmd
        .arg("agent")
        .args(["--server", &url, "--node-name", node])
        .arg("--ca-file")
        .arg(server_dir.join("pki").join("ca.crt"))
        .args(["--bootstrap-token", &token])
        // One machine: the node's address is loopback, where the agent's log service listens.
        .args(["--node-ip", "127.0.0.1"])
        .arg("--root")
        .arg(&agent_root)
        .arg("--csi-driver")
        .arg(format!("{CSI_DRIVER}=unix://{}", csi_socket.display()))
        .args([
            "--gpu-metrics-url",
            &format!("http://{gpu_metrics}/metrics"),
        ]);
    if let Some(runtime) = &args.runtime {
        agent_cmd.args(["--runtime", runtime]);
    }
    daemons.start("agent", &mut agent_cmd, &logs)?;
    let gpus = wait_for_node(&client, node, &mut daemons).await?;
    step(&format!(
        "node {node}: joined with a bootstrap token, Ready, {gpus} GPUs allocatable (agent root {})",
        agent_root.display()
    ));

    // 5. The training job.
    submit_job(&client).await?;
    let succeeded = follow_job(&client, &mut daemons, Duration::from_secs(args.timeout)).await?;
    show_pods(&client).await?;
    show_checkpoint_volume(&client).await?;

    // 6. The scheduler's packing on a real cluster trace.
    if !args.exit {
        replay_trace(&openb::data_dir())?;
    }

    say!("\nreach the cluster:");
    say!("  export KUBECONFIG={}", kubeconfig.display());
    say!("  cox get tj                    # or: kubectl get trainingjobs");
    say!("  cox describe tj {JOB}");
    say!("  cox top gpus                  # the GPU map with utilization");
    say!("  kubectl logs {JOB}-worker-0");
    say!("  daemon logs: {}", logs.display());
    if args.exit {
        // Leave nothing running: the job's pods go (the agent tears down their sandboxes,
        // networks and devices) before the daemons stop.
        delete_job(&client).await?;
        delete_volumes(&client).await?;
        daemons.stop();
        if succeeded {
            say!("\ncox demo: the training job succeeded (--exit)");
            return Ok(());
        }
        bail!("the training job did not succeed; see `{}`", logs.display());
    }
    say!("\nthe cluster keeps running until Ctrl-C");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        name = daemons.exited() => say!("cox demo: the {name} daemon exited; stopping"),
    }
    daemons.stop();
    Ok(())
}

/// Replaces any previous run's job and submits the trainer ConfigMap and the TrainingJob.
async fn submit_job(client: &ApiClient) -> anyhow::Result<()> {
    if delete_job(client).await? {
        step("removed the previous run's job");
    }
    if delete_volumes(client).await? {
        step("removed the previous run's dataset and checkpoint volumes");
    }
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "coxswain-trainer", "namespace": NAMESPACE},
        "data": {"train.py": TRAINER_PY},
    });
    apply_value(client, &config_map, "examples/trainer/train.py", "cox-demo").await?;
    for object in coxswain_api::decode(TRAINER_VOLUMES.as_bytes())
        .map_err(|e| anyhow::anyhow!("examples/trainer-volumes.yaml: {e}"))?
    {
        let applied = apply_value(
            client,
            &object.to_json_value()?,
            "examples/trainer-volumes.yaml",
            "cox-demo",
        )
        .await?;
        step(&format!(
            "{}/{} {}",
            applied.kind.singular,
            applied.name,
            applied.verb()
        ));
    }
    wait_for_dataset(client).await?;
    for object in coxswain_api::decode(TRAINING_JOB.as_bytes())
        .map_err(|e| anyhow::anyhow!("examples/trainingjob-trainer.yaml: {e}"))?
    {
        let applied = apply_value(
            client,
            &object.to_json_value()?,
            "examples/trainingjob-trainer.yaml",
            "cox-demo",
        )
        .await?;
        step(&format!(
            "{}/{} {} (resourceVersion {})",
            applied.kind.singular,
            applied.name,
            applied.verb(),
            applied.object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("?")
        ));
    }
    step(&format!(
        "submitted TrainingJob {NAMESPACE}/{JOB} (examples/trainingjob-trainer.yaml): 2 workers × 4 GPUs, one gang"
    ));
    Ok(())
}

/// Deletes the example job (foreground) and waits until it and its pods are gone; false
/// when there was none.
async fn delete_job(client: &ApiClient) -> anyhow::Result<bool> {
    let job_path = job_path();
    let previous = client
        .send(Method::GET, &job_path, "application/json", None)
        .await?;
    if !previous.status.is_success() {
        return Ok(false);
    }
    client
        .send(
            Method::DELETE,
            &job_path,
            "application/json",
            Some((
                "application/json",
                serde_json::to_vec(&json!({"propagationPolicy": "Foreground"}))?,
            )),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let job = client
            .send(Method::GET, &job_path, "application/json", None)
            .await?;
        if job.status == reqwest::StatusCode::NOT_FOUND && job_pods(client).await?.is_empty() {
            return Ok(true);
        }
        if Instant::now() > deadline {
            bail!("the job {NAMESPACE}/{JOB} did not go away within 90 s");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The example job's URL path.
fn job_path() -> String {
    format!("/apis/coxswain.dev/v1alpha1/namespaces/{NAMESPACE}/trainingjobs/{JOB}")
}

/// The job's pods, by name.
async fn job_pods(client: &ApiClient) -> anyhow::Result<Vec<Value>> {
    let list = client
        .ok(
            Method::GET,
            &format!(
                "/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=coxswain.dev%2Fjob-name%3D{JOB}"
            ),
            "application/json",
            None,
        )
        .await?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// Prints the job's condition changes and rank 0's output until it finishes; true when it
/// succeeded.
async fn follow_job(
    client: &ApiClient,
    daemons: &mut Daemons,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let job_path = job_path();
    let deadline = Instant::now() + timeout;
    let mut last_reason = String::new();
    let mut following: Option<String> = None;
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    loop {
        daemons.check()?;
        while let Ok(line) = lines_rx.try_recv() {
            say!("    │ {line}");
        }
        let job = client
            .ok(Method::GET, &job_path, "application/json", None)
            .await?;
        let status = &job["status"];
        let (state, reason) = job_state(status);
        if reason != last_reason {
            step(&format!("job: {state} — {reason}"));
            last_reason = reason;
        }
        match state.as_str() {
            "Succeeded" | "Failed" => {
                // Let the log stream deliver its last lines.
                tokio::time::sleep(Duration::from_millis(500)).await;
                while let Ok(line) = lines_rx.try_recv() {
                    say!("    │ {line}");
                }
                return Ok(state == "Succeeded");
            }
            _ => {}
        }
        // Follow rank 0's log once it runs (again after a gang restart: a new pod uid).
        for pod in job_pods(client).await? {
            let name = pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let uid = pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let running =
                pod["status"]["phase"] == "Running" || pod["status"]["phase"] == "Succeeded";
            if name.ends_with("-0") && running && following.as_deref() != Some(uid.as_str()) {
                following = Some(uid);
                step(&format!("following the output of rank 0 ({name})"));
                let stream = client
                    .stream(
                        &format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}/log?follow=true"),
                        "application/json, */*",
                    )
                    .await;
                if let Ok(response) = stream {
                    let tx = lines_tx.clone();
                    tokio::spawn(async move {
                        let mut response = response;
                        let mut pending = String::new();
                        while let Ok(Some(chunk)) = response.chunk().await {
                            pending.push_str(&String::from_utf8_lossy(&chunk));
                            while let Some(at) = pending.find('\n') {
                                let line: String = pending.drain(..=at).collect();
                                let _ = tx.send(line.trim_end().to_string());
                            }
                        }
                    });
                }
            }
        }
        if Instant::now() > deadline {
            say!("  the job did not finish within {} s", timeout.as_secs());
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The job's state (its newest true condition) and a human reason.
fn job_state(status: &Value) -> (String, String) {
    let newest = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "True")
        .max_by_key(|c| {
            c["lastTransitionTime"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
    match newest {
        None => ("Pending".into(), "waiting for the controller".into()),
        Some(c) => {
            let state = c["type"].as_str().unwrap_or("Unknown").to_string();
            let reason = c["message"]
                .as_str()
                .filter(|m| !m.is_empty())
                .or_else(|| c["reason"].as_str())
                .unwrap_or_default();
            (state.clone(), format!("{state}: {reason}"))
        }
    }
}

/// Prints the job's pods with their node, GPUs and phase.
async fn show_pods(client: &ApiClient) -> anyhow::Result<()> {
    say!("\n  POD\tNODE\tGPUS\tPHASE\tIP");
    for pod in job_pods(client).await? {
        say!(
            "  {}\t{}\t{}\t{}\t{}",
            pod["metadata"]["name"].as_str().unwrap_or("?"),
            pod["spec"]["nodeName"].as_str().unwrap_or("-"),
            pod["metadata"]["annotations"]["coxswain.dev/gpu-devices"]
                .as_str()
                .unwrap_or("-"),
            pod["status"]["phase"].as_str().unwrap_or("-"),
            pod["status"]["podIP"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}
/// Replays the openb default trace (seed 42) under BestFit and FGD.
fn replay_trace(data: &Path) -> anyhow::Result<()> {
    let nodes_csv = data.join("csv/openb_node_list_gpu_node.csv");
    let pods_csv = data.join("csv/openb_pod_list_default.csv");
    if !nodes_csv.exists() || !pods_csv.exists() {
        say!(
            "\nplacement simulator: skipped, the openb traces are not at {} (set {})",
            data.display(),
            openb::DATA_DIR_ENV
        );
        return Ok(());
    }
    step("placement simulator: replaying the Alibaba openb trace (1,213 nodes, 6,212 GPUs)");
    let nodes = read_nodes(&nodes_csv)?;
    let pods = read_pods(&pods_csv)?;
    let workload = Workload::generate(nodes, pods, 1.3, 42);
    for policy in [PolicyKind::BestFit, PolicyKind::Fgd] {
        let started = Instant::now();
        let result = replay(&workload, policy);
        let summary = RunSummary::new(
            "openb_pod_list_default",
            &workload,
            policy,
            1.3,
            42,
            &result,
        );
        let unallocated = summary
            .unallocated(100)
            .map_or("?".into(), |h| format!("{}.{:02}", h / 100, h % 100));
        say!(
            "  {:<8} {:>6} % of GPUs unallocated at 100 % arrived load ({} pods, {} failed, {:.1} s)",
            policy.short_name(),
            unallocated,
            summary.submissions,
            summary.failed,
            started.elapsed().as_secs_f64()
        );
    }
    say!("  (the paper's published means over 10 seeds: BestFit 7.14, FGD 4.77)");
    Ok(())
}

fn step(message: &str) {
    say!("✓ {message}");
}
