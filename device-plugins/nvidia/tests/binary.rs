//! The `cox-nvidia-plugin` binary: a clear one-line error without NVML, an
//! inventory of simulated GPUs labelled as such, and a full run against a
//! fake kubelet ending with SIGTERM.

mod common;

use std::process::{Command, Stdio};

use common::{FakeKubelet, WAIT, channel, is_root};
use coxswain_proto::deviceplugin::v1beta1::Empty;
use coxswain_proto::deviceplugin::v1beta1::device_plugin_client::DevicePluginClient;
use tokio::io::AsyncReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_cox-nvidia-plugin");

#[test]
fn without_nvml_it_says_so_in_one_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--list", "--plugin-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    if out.status.success() {
        eprintln!(
            "skipping: NVML is present on this machine, so the no-driver path cannot be shown"
        );
        return;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("NVML is not available") && stderr.contains("--simulate"),
        "{stderr}"
    );
}

#[test]
fn unknown_topology_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--list", "--simulate", "dgx-z100", "--plugin-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dgx-z100") && stderr.contains("dgx-h100"),
        "{stderr}"
    );
}

#[test]
fn simulated_inventory_is_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--list", "--simulate", "dgx-h100", "--plugin-dir"])
        .arg(dir.path().join("device-plugins"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("needs root") {
        eprintln!("skipping simulated_inventory_is_labelled: creating device nodes needs root");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("simulated dgx-h100"), "{stdout}");
    let gpus: Vec<&str> = stdout.lines().filter(|l| l.starts_with("GPU ")).collect();
    assert_eq!(gpus.len(), 8);
    assert!(
        gpus.iter()
            .all(|l| l.ends_with("SIMULATED") && l.contains("nvlink-island nvlink-0")),
        "{stdout}"
    );
    assert!(dir.path().join("simulated-dev/nvidia7").exists());
}

#[tokio::test]
async fn serves_simulated_gpus_to_a_kubelet_and_stops_on_sigterm() {
    if !is_root() {
        eprintln!(
            "skipping serves_simulated_gpus_to_a_kubelet_and_stops_on_sigterm: simulated device nodes need root"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("device-plugins");
    let mut kubelet = FakeKubelet::start(&plugin_dir);
    let mut child = tokio::process::Command::new(BIN)
        .args(["--simulate", "dgx-a100", "--plugin-dir"])
        .arg(&plugin_dir)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let req = kubelet.next_registration().await;
    assert_eq!(
        (req.endpoint.as_str(), req.resource_name.as_str()),
        ("nvidia-gpu.sock", "nvidia.com/gpu")
    );
    let mut dp = DevicePluginClient::new(channel(&plugin_dir.join(&req.endpoint)).await);
    let mut stream = dp.list_and_watch(Empty {}).await.unwrap().into_inner();
    let list = tokio::time::timeout(WAIT, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(list.devices.len(), 8);

    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .await
        .unwrap();
    assert!(log.contains("SIMULATED"), "{log}");
    assert!(dir.path().join("simulated-dev/nvidiactl").exists());
    assert!(
        !plugin_dir.join(&req.endpoint).exists(),
        "socket left behind after SIGTERM"
    );
}
