//! The main job end to end: `cox demo --exit` brings up a one-machine cluster (`cox server`
//! over TLS, `cox-nvidia-plugin` with simulated GPUs, `cox agent` joined with a bootstrap
//! token, with runc and the CNI plugins), runs
//! the example TrainingJob (two workers, four GPUs each, a TCP all-reduce between their pods,
//! checkpoints on a volume `cox-csi` provisions)
//! and exits 0 only when the job succeeded. Needs root, runc and the CNI plugins, like the
//! agent's own tests; `scripts/setup.sh` installs them.

mod cluster;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on the whole demo: a hang fails the test instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(480);

/// The losses rank 0 printed, in epoch order.
fn losses(output: &str) -> Vec<f64> {
    output
        .lines()
        .filter_map(|line| line.split("rank 0/2 epoch ").nth(1))
        .filter_map(|rest| rest.split(" loss ").nth(1)?.trim().parse().ok())
        .collect()
}

#[test]
fn demo_trains_the_example_job_to_success_and_leaves_nothing_running() {
    assert!(
        nix_is_root(),
        "THIS TEST NEEDS ROOT: cox demo runs containers with runc in namespaces and cgroups"
    );
    cluster::plugin_beside_cox();
    cluster::csi_beside_cox();
    let data = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_cox"))
        .args([
            "demo",
            "--exit",
            "--listen",
            "127.0.0.1:0",
            "--timeout",
            "300",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting cox demo");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = demo.kill();
            break demo.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let output = demo.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let agent_log = std::fs::read_to_string(data.path().join("logs/agent.log")).unwrap_or_default();
    let context = format!(
        "status {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- agent log (end)\n{}",
        agent_log
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(status.success(), "cox demo --exit failed\n{context}");
    assert!(
        stdout.contains("SIMULATED GPUs") || stdout.contains("real GPUs"),
        "{context}"
    );
    assert!(stdout.contains("job: Succeeded"), "{context}");
    // Over TLS, with the agent joined by a bootstrap token and holding its own node
    // certificate.
    assert!(stdout.contains("on https://127.0.0.1:"), "{context}");
    assert!(
        stdout.contains("joined with a bootstrap token, Ready"),
        "{context}"
    );
    assert!(
        data.path().join("agent/pki/node.crt").exists(),
        "the agent's node certificate\n{context}"
    );
    let kubeconfig =
        std::fs::read_to_string(data.path().join("server/admin.kubeconfig")).unwrap_or_default();
    assert!(
        kubeconfig.contains("https://127.0.0.1:") && kubeconfig.contains("certificate-authority"),
        "the admin kubeconfig reaches the TLS listener: {kubeconfig}"
    );
    assert!(
        stdout.contains("result: loss="),
        "rank 0's output reached the demo\n{context}"
    );

    // The loss went down over the epochs rank 0 printed.
    let losses = losses(&stdout);
    assert!(losses.len() >= 10, "rank 0 printed its epochs\n{context}");
    assert!(
        losses.last().unwrap() < &(losses[0] / 10.0),
        "the loss fell: {losses:?}"
    );

    // Each worker got its own GPU from the scheduler, recorded on the pod.
    let gpus: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("trainer-worker-"))
        .filter_map(|l| l.split('\t').nth(2))
        .collect();
    assert_eq!(gpus.len(), 2, "{context}");
    assert!(
        gpus.iter().all(|g| g.matches("GPU-").count() == 4),
        "four GPUs each: {gpus:?}"
    );
    assert_ne!(gpus[0], gpus[1], "two workers never share a whole GPU");

    // The workers read the dataset the Job wrote, from its read-only CSI volume.
    assert!(
        stdout.contains("dataset: Job trainer-dataset wrote the samples")
            && stdout.contains("rank 0/2 dataset: 1024 samples from /dataset/samples.csv"),
        "{context}"
    );
    // The checkpoints went to a volume the CSI driver provisioned for the job's claim.
    assert!(
        stdout.contains("checkpoints: claim trainer-checkpoints bound to volume pvc-")
            && stdout.contains("csi.coxswain.dev, 256Mi"),
        "{context}"
    );

    // `--exit` deleted the job and its claim first: no pod sandbox, no volume is left
    // behind (the driver deleted the claim's volume: reclaim policy Delete).
    let volumes = data.path().join("csi-state");
    let images: Vec<_> = walk(&volumes)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "img"))
        .collect();
    assert!(images.is_empty(), "volumes left: {images:?}\n{context}");
    for dir in ["netns", "pods"] {
        let path = data.path().join("agent").join(dir);
        let left: Vec<_> = std::fs::read_dir(&path)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "{} still holds {left:?}\n{context}",
            path.display()
        );
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
