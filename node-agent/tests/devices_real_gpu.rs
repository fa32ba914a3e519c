//! A REAL GPU through the agent into a runc container (`scripts/gpu-check` runs
//! this on GPU machines): `cox-nvidia-plugin` on NVML, the agent's device manager,
//! and a busybox pod on runc given the machine's last GPU. The container must see
//! exactly that GPU: its UUID in `NVIDIA_VISIBLE_DEVICES`, one `/dev/nvidiaN` node
//! that opens (the driver answers), no other GPU's node, and a node it makes
//! itself for another GPU refused by the device cgroup. Where there is no NVIDIA
//! driver it says so and passes (everything else is covered with simulated GPUs).

mod common;
mod devices_support;

use std::sync::Arc;

use devices_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_gpu_reaches_exactly_its_container() {
    if !std::path::Path::new("/proc/driver/nvidia/version").exists() {
        eprintln!(
            "skipping a_real_gpu_reaches_exactly_its_container: no NVIDIA driver (/proc/driver/nvidia/version)"
        );
        return;
    }
    require_root();
    let root = temp_root();
    let dir = root.path().join("device-plugins");
    let (manager, cancel) = start_manager(&dir).await;
    let mut plugin = std::process::Command::new(plugin_binary())
        .arg("--plugin-dir")
        .arg(&dir)
        .spawn()
        .expect("starting cox-nvidia-plugin");
    let inventory = wait_inventory(&manager, "the real GPUs", |i| gpus(i) > 0).await;
    let all = uuids(&inventory);
    eprintln!("GPUs: {all:?}");
    let gpu = all.last().unwrap().clone();
    let others = all.len() - 1;

    let (m, g) = (manager.clone(), gpu.clone());
    let log = tokio::task::spawn_blocking(move || {
        let mut h = common::Harness::new(coxswain_node_agent::runtime::RuntimeKind::Runc);
        h.deps.devices = Arc::new(m);
        let uid = common::uid();
        let mut pod = common::pod(
            &uid,
            serde_json::json!({"restartPolicy": "Never", "containers": [{
                "name": "main", "image": "busybox",
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
                "command": ["sh", "-c", concat!(
                    "echo visible=$NVIDIA_VISIBLE_DEVICES; ",
                    "for n in $(ls /dev | grep -E '^nvidia[0-9]+$'); do echo gpu-node=$n; done; ",
                    "own=$(ls /dev | grep -E '^nvidia[0-9]+$' | head -n1); ",
                    "dd if=/dev/$own of=/dev/null count=0 2>&1 | sed 's/^/own: /'; ",
                    "mknod /tmp/other c 195 254 && dd if=/tmp/other of=/dev/null count=0 2>&1 | sed 's/^/other: /'; ",
                    "nvidia-smi -L 2>&1 | sed 's/^/smi: /'; true")],
            }]}),
        );
        pod.metadata.annotations =
            Some([("coxswain.dev/gpu-devices".to_string(), format!("[\"{g}\"]"))].into());
        let mut w = h.worker(pod);
        let status = common::drive(&mut w, |st| matches!(common::phase(st), "Succeeded" | "Failed"));
        let log = std::fs::read_to_string(h.deps.config.pod_dir(&uid).join("logs/main/0.log"))
            .unwrap_or_else(|e| format!("no log ({e}): {status:#?}"));
        common::remove(&mut w, &h.clock);
        log
    })
    .await
    .unwrap();
    println!("container output:\n{log}");
    let _ = plugin.kill();
    let _ = plugin.wait();
    assert!(log.contains(&format!("visible={gpu}")), "{log}");
    let nodes: Vec<&str> = log.lines().filter(|l| l.contains("gpu-node=")).collect();
    assert_eq!(
        nodes.len(),
        1,
        "the container must see exactly one GPU node ({others} others exist): {log}"
    );
    assert!(
        !log.contains("own: dd: can't open"),
        "the container cannot open its GPU: {log}"
    );
    assert!(
        log.contains("other: dd: can't open '/tmp/other': Operation not permitted"),
        "{log}"
    );
    cancel.cancel();
}
