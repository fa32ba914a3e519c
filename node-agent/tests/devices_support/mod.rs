//! Shared by the `devices_*` tests: the real `cox-nvidia-plugin` binary (found next
//! to the test binary, else built once), a device manager over a temp dir, waits on
//! its inventory, GPU pods, and XID injection over the plugin's socket.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use coxswain_api::k8s::{Container, Pod};
use coxswain_node_agent::devices::{
    DeviceInventory, DeviceManager, DeviceManagerConfig, DeviceStage, Error,
};
use coxswain_node_agent::runtime::{ContainerConfig, build_spec};
use coxswain_proto::deviceplugin::v1alpha1::simulated_gpu_control_client::SimulatedGpuControlClient;
use coxswain_proto::deviceplugin::v1alpha1::{InjectXidRequest, RecoverRequest};
use hyper_util::rt::TokioIo;
use oci_spec::runtime::Spec;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

/// Bound on every wait: a hang fails the test instead of blocking CI.
pub const WAIT: Duration = Duration::from_secs(60);

/// The plugin binary: next to this test binary (`target/<profile>/`), else built
/// (once for all the tests of this binary).
pub fn plugin_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(find_or_build_plugin).clone()
}

fn find_or_build_plugin() -> PathBuf {
    let find = || {
        std::env::current_exe()
            .ok()?
            .ancestors()
            .map(|dir| dir.join("cox-nvidia-plugin"))
            .find(|p| p.is_file())
    };
    if let Some(path) = find() {
        return path;
    }
    eprintln!("cox-nvidia-plugin not built yet: running cargo build -p coxswain-nvidia-plugin");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "-p",
            "coxswain-nvidia-plugin",
            "--bin",
            "cox-nvidia-plugin",
        ])
        .status();
    find().unwrap_or_else(|| {
        panic!(
            "THE cox-nvidia-plugin BINARY IS MISSING and building it failed ({status:?}): \
             run `cargo build -p coxswain-nvidia-plugin` before these tests"
        )
    })
}

/// Fails (never skips) without root: the plugin creates device nodes with mknod.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "device tests need root: cox-nvidia-plugin --simulate creates device nodes with mknod"
    );
}

/// A running `cox-nvidia-plugin --simulate`; killed (SIGKILL) on drop.
pub struct Plugin {
    child: Child,
    socket: PathBuf,
}

impl Plugin {
    /// Starts the plugin on `plugin_dir` (device nodes in its sibling `simulated-dev`).
    pub fn spawn(plugin_dir: &Path, topology: &str) -> Self {
        Self::spawn_with(plugin_dir, topology, &[])
    }

    /// [`Plugin::spawn`] with more arguments.
    pub fn spawn_with(plugin_dir: &Path, topology: &str, extra: &[&std::ffi::OsStr]) -> Self {
        let dev = plugin_dir.parent().unwrap().join("simulated-dev");
        let child = Command::new(plugin_binary())
            .arg("--plugin-dir")
            .arg(plugin_dir)
            .arg("--simulated-dev-dir")
            .arg(dev)
            .args(["--simulate", topology, "--recheck-secs", "1"])
            .args(extra)
            .spawn()
            .expect("starting cox-nvidia-plugin");
        Self {
            child,
            socket: plugin_dir.join("nvidia-gpu.sock"),
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Raises `xid` on `device` through `SimulatedGpuControl`.
    pub async fn inject_xid(&self, device: &str, xid: u32) {
        let marked = SimulatedGpuControlClient::new(connect(self.socket.clone()).await)
            .inject_xid(InjectXidRequest {
                device_id: device.to_string(),
                xid,
            })
            .await
            .unwrap()
            .into_inner()
            .marked_unhealthy;
        assert!(marked, "XID {xid} did not mark {device} unhealthy");
    }

    /// Clears the fault on `device`.
    pub async fn recover(&self, device: &str) {
        SimulatedGpuControlClient::new(connect(self.socket.clone()).await)
            .recover(RecoverRequest {
                device_id: device.to_string(),
            })
            .await
            .unwrap();
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Dials a gRPC server on a Unix socket.
pub async fn connect(socket: PathBuf) -> Channel {
    Endpoint::from_static("http://[::1]:50051")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
        .unwrap()
}

/// A temp dir under /var/tmp (tmpfs may refuse device nodes).
pub fn temp_root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cox-devices-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// Starts a device manager on `plugin_dir` for node `node-a`.
pub async fn start_manager(plugin_dir: &Path) -> (DeviceManager, CancellationToken) {
    let cancel = CancellationToken::new();
    let mut config = DeviceManagerConfig::new(plugin_dir, "node-a");
    config.cdi_dirs = Vec::new();
    let manager = DeviceManager::start(config, cancel.clone()).await.unwrap();
    (manager, cancel)
}

/// Waits until the inventory satisfies `done` (at most `limit`); returns it.
pub async fn wait_inventory_within(
    manager: &DeviceManager,
    what: &str,
    limit: Duration,
    done: impl Fn(&DeviceInventory) -> bool,
) -> DeviceInventory {
    let mut rx = manager.watch_inventory();
    match tokio::time::timeout(limit, rx.wait_for(|i| done(i))).await {
        Ok(Ok(inventory)) => inventory.clone(),
        _ => panic!(
            "{what}: not reached within {limit:?}: {:#?}",
            manager.inventory()
        ),
    }
}

/// [`wait_inventory_within`] the hang guard [`WAIT`].
pub async fn wait_inventory(
    manager: &DeviceManager,
    what: &str,
    done: impl Fn(&DeviceInventory) -> bool,
) -> DeviceInventory {
    wait_inventory_within(manager, what, WAIT, done).await
}

/// Allocatable `nvidia.com/gpu`.
pub fn gpus(inventory: &DeviceInventory) -> i64 {
    inventory
        .allocatable
        .get("nvidia.com/gpu")
        .copied()
        .unwrap_or(0)
}

/// The device IDs (UUIDs) in the inventory's slice.
pub fn uuids(inventory: &DeviceInventory) -> Vec<String> {
    inventory
        .resource_slices
        .iter()
        .flat_map(|s| s.spec.devices.iter().flatten())
        .filter_map(|d| {
            let attrs = d.attributes.as_ref()?;
            attrs.get("uuid")?.string.clone()
        })
        .collect()
}

/// A pod `uid` whose one container asks for `gpus` GPUs, with the scheduler's
/// annotation when `annotation` is given.
pub fn gpu_pod(uid: &str, gpus: u32, annotation: Option<&[String]>) -> (Pod, Container) {
    let mut pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("pod-{uid}"), "namespace": "default", "uid": uid},
        "spec": {"containers": [{
            "name": "train", "image": "busybox",
            "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}},
        }]},
    }))
    .unwrap();
    if let Some(ids) = annotation {
        pod.metadata.annotations = Some(
            [(
                "coxswain.dev/gpu-devices".to_string(),
                serde_json::to_string(ids).unwrap(),
            )]
            .into(),
        );
    }
    let container = pod.spec.as_ref().unwrap().containers[0].clone();
    (pod, container)
}

/// Runs the (blocking) device stage the way the pod worker does, off the async workers.
pub async fn prepare(manager: &DeviceManager, pod: &Pod, c: &Container) -> Result<Spec, Error> {
    let (manager, pod, c) = (manager.clone(), pod.clone(), c.clone());
    tokio::task::spawn_blocking(move || {
        let mut spec = build_spec(&ContainerConfig {
            args: vec!["true".into()],
            ..Default::default()
        })
        .unwrap();
        manager
            .prepare_container(&pod, &c, &mut spec)
            .map(|()| spec)
    })
    .await
    .unwrap()
}

/// The value of `key` in the spec's process env.
pub fn env(spec: &Spec, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    spec.process()
        .as_ref()?
        .env()
        .as_ref()?
        .iter()
        .find_map(|e| e.strip_prefix(&prefix).map(str::to_string))
}
