//! The device manager against the REAL `cox-nvidia-plugin` binary serving simulated
//! GPUs, over real Unix sockets in a temp dir: registration and inventory,
//! allocation of exactly the annotated devices into an OCI spec, plugin death and
//! re-registration, the checkpoint across a manager restart, health faults injected
//! through `SimulatedGpuControl`, and a busybox container on runc that gets its GPU.
//!
//! Needs root (the plugin creates its simulated device nodes with mknod). The plugin
//! binary is looked for next to this test binary and built with cargo when missing.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
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
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

/// Bound on every wait: a hang fails the test instead of blocking CI.
const WAIT: Duration = Duration::from_secs(30);

/// The plugin binary: next to this test binary (`target/<profile>/`), else built
/// (once for all the tests of this binary).
fn plugin_binary() -> PathBuf {
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

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "device tests need root: cox-nvidia-plugin --simulate creates device nodes with mknod"
    );
}

/// A running `cox-nvidia-plugin --simulate`; killed (SIGKILL) on drop.
struct Plugin {
    child: Child,
}

impl Plugin {
    fn spawn(root: &Path, topology: &str) -> Self {
        let child = Command::new(plugin_binary())
            .arg("--plugin-dir")
            .arg(root.join("device-plugins"))
            .arg("--simulated-dev-dir")
            .arg(root.join("simulated-dev"))
            .args(["--simulate", topology, "--recheck-secs", "1"])
            .spawn()
            .expect("starting cox-nvidia-plugin");
        Self { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    manager: DeviceManager,
    cancel: CancellationToken,
}

impl Setup {
    async fn new() -> Self {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("cox-devices-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let (manager, cancel) = start_manager(dir.path()).await;
        Self {
            dir,
            manager,
            cancel,
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }
}

async fn start_manager(root: &Path) -> (DeviceManager, CancellationToken) {
    let cancel = CancellationToken::new();
    let mut config = DeviceManagerConfig::new(root.join("device-plugins"), "node-a");
    config.cdi_dirs = Vec::new();
    let manager = DeviceManager::start(config, cancel.clone()).await.unwrap();
    (manager, cancel)
}

/// Waits until the inventory satisfies `done`; returns it.
async fn wait_inventory(
    manager: &DeviceManager,
    what: &str,
    done: impl Fn(&DeviceInventory) -> bool,
) -> DeviceInventory {
    let mut rx: watch::Receiver<DeviceInventory> = manager.watch_inventory();
    let found = tokio::time::timeout(WAIT, rx.wait_for(|i| done(i))).await;
    match found {
        Ok(Ok(inventory)) => inventory.clone(),
        _ => panic!(
            "{what}: not reached within {WAIT:?}: {:#?}",
            manager.inventory()
        ),
    }
}

fn gpus(inventory: &DeviceInventory) -> i64 {
    inventory
        .allocatable
        .get("nvidia.com/gpu")
        .copied()
        .unwrap_or(0)
}

/// (index, uuid, numaNode, nvlinkIsland) of every GPU in the inventory's slice.
fn slice_gpus(inventory: &DeviceInventory) -> Vec<(i64, String, i64, i64)> {
    let slice = &inventory.resource_slices[0];
    let attr = |d: &k8s_openapi::api::resource::v1::Device, k: &str| {
        d.attributes.as_ref().unwrap()[k].clone()
    };
    let mut out: Vec<_> = slice
        .spec
        .devices
        .iter()
        .flatten()
        .map(|d| {
            (
                attr(d, "index").int.unwrap(),
                attr(d, "uuid").string.unwrap(),
                attr(d, "numaNode").int.unwrap(),
                attr(d, "nvlinkIsland").int.unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn uuid(inventory: &DeviceInventory, index: i64) -> String {
    slice_gpus(inventory)
        .into_iter()
        .find(|g| g.0 == index)
        .unwrap()
        .1
}

fn gpu_pod(uid: &str, gpus: u32, annotation: Option<Vec<String>>) -> (Pod, Container) {
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
                serde_json::to_string(&ids).unwrap(),
            )]
            .into(),
        );
    }
    let container = pod.spec.as_ref().unwrap().containers[0].clone();
    (pod, container)
}

fn spec() -> Spec {
    build_spec(&ContainerConfig {
        args: vec!["true".into()],
        ..Default::default()
    })
    .unwrap()
}

/// Runs the (blocking) device stage the way the pod worker does, off the async workers.
async fn prepare(manager: &DeviceManager, pod: &Pod, c: &Container) -> Result<Spec, Error> {
    let (manager, pod, c) = (manager.clone(), pod.clone(), c.clone());
    tokio::task::spawn_blocking(move || {
        let mut spec = spec();
        manager
            .prepare_container(&pod, &c, &mut spec)
            .map(|()| spec)
    })
    .await
    .unwrap()
}

/// (container path, major, minor) of the spec's device nodes, and the allow rules.
type Nodes = Vec<(String, i64, i64)>;

fn nodes_and_rules(spec: &Spec) -> (Nodes, Vec<(i64, i64)>) {
    let json = serde_json::to_value(spec).unwrap();
    let nodes = json["linux"]["devices"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["major"].as_i64().unwrap(),
                d["minor"].as_i64().unwrap(),
            )
        })
        .collect();
    let rules = json["linux"]["resources"]["devices"].as_array().unwrap();
    assert_eq!(rules[0]["allow"], false, "the default deny stays first");
    let allowed = rules[1..]
        .iter()
        .filter(|r| r["allow"] == true)
        .map(|r| (r["major"].as_i64().unwrap(), r["minor"].as_i64().unwrap()))
        .collect();
    (nodes, allowed)
}

fn env(spec: &Spec, key: &str) -> Option<String> {
    spec.process()
        .as_ref()?
        .env()
        .as_ref()?
        .iter()
        .find_map(|e| e.strip_prefix(&format!("{key}=")).map(str::to_string))
}

async fn connect(socket: PathBuf) -> Channel {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registration_publishes_eight_simulated_gpus_with_topology() {
    let s = Setup::new().await;
    let _plugin = Plugin::spawn(s.root(), "pcie-8x-nvlink-pairs");
    let inventory = wait_inventory(&s.manager, "8 GPUs", |i| gpus(i) == 8).await;
    assert_eq!(inventory.capacity["nvidia.com/gpu"], 8);
    assert_eq!(inventory.resource_slices.len(), 1);
    let slice = &inventory.resource_slices[0];
    assert_eq!(slice.spec.driver, "gpu.coxswain.dev");
    assert_eq!(slice.spec.node_name.as_deref(), Some("node-a"));
    assert_eq!(slice.spec.pool.name, "node-a");
    let devices = slice.spec.devices.as_ref().unwrap();
    let names: BTreeSet<&str> = devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        (0..8)
            .map(|i| format!("gpu-{i}"))
            .collect::<BTreeSet<_>>()
            .iter()
            .map(String::as_str)
            .collect()
    );
    let d0 = devices.iter().find(|d| d.name == "gpu-0").unwrap();
    let attrs = d0.attributes.as_ref().unwrap();
    assert_eq!(
        attrs["model"].string.as_deref(),
        Some("NVIDIA A100 80GB PCIe")
    );
    assert_eq!(attrs["simulated"].bool, Some(true));
    assert_eq!(
        attrs["resourceName"].string.as_deref(),
        Some("nvidia.com/gpu")
    );
    assert!(
        attrs["uuid"]
            .string
            .as_ref()
            .unwrap()
            .starts_with("GPU-5140")
    );
    assert!(!attrs["pcieRoot"].string.as_ref().unwrap().is_empty());
    assert_eq!(attrs["computeCapability"].string.as_deref(), Some("8.0"));
    assert_eq!(
        d0.capacity.as_ref().unwrap()["memory"].value.0,
        (80u64 << 30).to_string()
    );
    let gpus = slice_gpus(&inventory);
    // NUMA: 0-3 on node 0, 4-7 on node 1; NVLink bridges pair 0-1, 2-3, 4-5, 6-7.
    let numa: Vec<i64> = gpus.iter().map(|g| g.2).collect();
    assert_eq!(numa, vec![0, 0, 0, 0, 1, 1, 1, 1]);
    let island = |i: usize| gpus[i].3;
    assert_eq!(island(0), island(1));
    assert_eq!(island(6), island(7));
    assert_ne!(island(1), island(2));
    assert_eq!(gpus.iter().map(|g| &g.3).collect::<BTreeSet<_>>().len(), 4);
    s.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allocate_gives_exactly_the_annotated_gpus_and_never_one_twice() {
    let s = Setup::new().await;
    let _plugin = Plugin::spawn(s.root(), "pcie-8x-nvlink-pairs");
    let inventory = wait_inventory(&s.manager, "8 GPUs", |i| gpus(i) == 8).await;
    let (g2, g5) = (uuid(&inventory, 2), uuid(&inventory, 5));
    let (pod, c) = gpu_pod("pod-a", 2, Some(vec![g2.clone(), g5.clone()]));
    let spec = prepare(&s.manager, &pod, &c).await.unwrap();
    let (nodes, allowed) = nodes_and_rules(&spec);
    let paths: Vec<&str> = nodes.iter().map(|n| n.0.as_str()).collect();
    assert_eq!(
        paths,
        vec!["/dev/nvidia2", "/dev/nvidia5", "/dev/nvidiactl"]
    );
    assert_eq!(allowed, vec![(195, 2), (195, 5), (195, 255)]);
    assert_eq!(
        env(&spec, "NVIDIA_VISIBLE_DEVICES"),
        Some(format!("{g2},{g5}"))
    );
    assert_eq!(
        env(&spec, "CUDA_VISIBLE_DEVICES"),
        Some(format!("{g2},{g5}"))
    );
    assert_eq!(
        env(&spec, "COXSWAIN_SIMULATED_GPUS").as_deref(),
        Some("true")
    );
    assert_eq!(
        spec.annotations().as_ref().unwrap()["coxswain.dev/simulated-gpus"],
        "true"
    );
    // Another pod annotated with a held GPU is refused, naming the holder.
    let (other, oc) = gpu_pod("pod-b", 1, Some(vec![g5.clone()]));
    let err = prepare(&s.manager, &other, &oc).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("device {g5} is already allocated to pod pod-a")
    );
    assert_eq!(err.reason(), "UnexpectedAdmissionError");
    // Without an annotation the plugin's preferred pair among the free GPUs is used:
    // an NVLink pair, never one of pod-a's.
    let (free, fc) = gpu_pod("pod-c", 2, None);
    let spec = prepare(&s.manager, &free, &fc).await.unwrap();
    let ids: Vec<String> = env(&spec, "NVIDIA_VISIBLE_DEVICES")
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&g2) && !ids.contains(&g5), "{ids:?}");
    let islands: BTreeSet<i64> = slice_gpus(&inventory)
        .into_iter()
        .filter(|g| ids.contains(&g.1))
        .map(|g| g.3)
        .collect();
    assert_eq!(
        islands.len(),
        1,
        "preferred allocation spans one NVLink island: {ids:?}"
    );
    let held = s.manager.allocations();
    assert_eq!(held["pod-a"], BTreeSet::from([g2.clone(), g5.clone()]));
    assert!(!held.contains_key("pod-b"));
    // Releasing pod-a frees its GPUs for pod-b.
    s.manager.release_pod("pod-a");
    prepare(&s.manager, &other, &oc).await.unwrap();
    s.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_plugin_takes_its_devices_and_a_restarted_one_brings_them_back() {
    let s = Setup::new().await;
    let mut plugin = Plugin::spawn(s.root(), "dgx-h100");
    wait_inventory(&s.manager, "8 GPUs", |i| gpus(i) == 8).await;
    plugin.kill();
    let gone = wait_inventory(&s.manager, "devices gone", |i| gpus(i) == 0).await;
    assert_eq!(gone.capacity["nvidia.com/gpu"], 0);
    assert!(gone.resource_slices.is_empty());
    let (pod, c) = gpu_pod("pod-a", 1, None);
    let err = prepare(&s.manager, &pod, &c).await.unwrap_err().to_string();
    assert!(
        err.contains("no device plugin is registered for nvidia.com/gpu"),
        "{err}"
    );
    let _again = Plugin::spawn(s.root(), "dgx-h100");
    let back = wait_inventory(&s.manager, "re-registered", |i| gpus(i) == 8).await;
    assert_eq!(
        back.resource_slices[0].spec.devices.as_ref().unwrap().len(),
        8
    );
    prepare(&s.manager, &pod, &c).await.unwrap();
    s.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checkpoint_survives_a_manager_restart_and_prevents_double_allocation() {
    let s = Setup::new().await;
    let _plugin = Plugin::spawn(s.root(), "dgx-h100");
    let inventory = wait_inventory(&s.manager, "8 GPUs", |i| gpus(i) == 8).await;
    let g3 = uuid(&inventory, 3);
    let (pod_a, ca) = gpu_pod("pod-a", 1, Some(vec![g3.clone()]));
    let first = prepare(&s.manager, &pod_a, &ca).await.unwrap();
    s.cancel.cancel();
    // A new manager in the same directory: kubelet.sock is recreated, the plugin
    // registers again, and the checkpoint still holds pod-a's GPU.
    let kubelet = s.manager.kubelet_socket();
    tokio::time::timeout(WAIT, async {
        while kubelet.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the stopped manager removes kubelet.sock");
    let (manager, cancel) = start_manager(s.root()).await;
    wait_inventory(&manager, "re-registered after restart", |i| gpus(i) == 8).await;
    assert_eq!(manager.allocations()["pod-a"], BTreeSet::from([g3.clone()]));
    let (pod_b, cb) = gpu_pod("pod-b", 1, Some(vec![g3.clone()]));
    let err = prepare(&manager, &pod_b, &cb)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("device {g3} is already allocated to pod pod-a")
    );
    // A restarted container of pod-a gets the same devices again.
    let again = prepare(&manager, &pod_a, &ca).await.unwrap();
    assert_eq!(nodes_and_rules(&again), nodes_and_rules(&first));
    // pod-a is gone: retain_pods drops it and pod-b gets the GPU.
    manager.retain_pods(&BTreeSet::from(["pod-b".to_string()]));
    prepare(&manager, &pod_b, &cb).await.unwrap();
    let text = std::fs::read_to_string(s.root().join("device-plugins/checkpoint.json")).unwrap();
    assert!(text.contains("pod-b") && !text.contains("pod-a"), "{text}");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_injected_xid_drops_allocatable_and_reports_the_pods_holding_the_gpu() {
    let s = Setup::new().await;
    let _plugin = Plugin::spawn(s.root(), "dgx-h100");
    let inventory = wait_inventory(&s.manager, "8 GPUs", |i| gpus(i) == 8).await;
    let g4 = uuid(&inventory, 4);
    let (pod, c) = gpu_pod("pod-a", 1, Some(vec![g4.clone()]));
    prepare(&s.manager, &pod, &c).await.unwrap();
    let socket = s.root().join("device-plugins/nvidia-gpu.sock");
    let marked = SimulatedGpuControlClient::new(connect(socket).await)
        .inject_xid(InjectXidRequest {
            device_id: g4.clone(),
            xid: 79,
        })
        .await
        .unwrap()
        .into_inner()
        .marked_unhealthy;
    assert!(marked);
    let after = wait_inventory(&s.manager, "allocatable 7", |i| gpus(i) == 7).await;
    assert_eq!(after.capacity["nvidia.com/gpu"], 8);
    let listed: Vec<String> = slice_gpus(&after).into_iter().map(|g| g.1).collect();
    assert_eq!(listed.len(), 7);
    assert!(!listed.contains(&g4));
    assert_eq!(
        s.manager.pods_on_unhealthy_devices(),
        [("pod-a".to_string(), vec![g4.clone()])].into()
    );
    s.manager.release_pod("pod-a");
    let (next, nc) = gpu_pod("pod-b", 1, Some(vec![g4.clone()]));
    let err = prepare(&s.manager, &next, &nc)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, format!("device {g4} of nvidia.com/gpu: unhealthy"));
    // Recovered (the plugin re-checks it after --recheck-secs): back in service.
    let socket = s.root().join("device-plugins/nvidia-gpu.sock");
    SimulatedGpuControlClient::new(connect(socket).await)
        .recover(RecoverRequest {
            device_id: g4.clone(),
        })
        .await
        .unwrap();
    wait_inventory(&s.manager, "allocatable 8 again", |i| gpus(i) == 8).await;
    assert!(s.manager.pods_on_unhealthy_devices().is_empty());
    prepare(&s.manager, &next, &nc).await.unwrap();
    s.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runc_container_sees_its_gpu_node_and_env_and_is_denied_the_others() {
    let s = Setup::new().await;
    let _plugin = Plugin::spawn(s.root(), "pcie-4x");
    let inventory = wait_inventory(&s.manager, "4 GPUs", |i| gpus(i) == 4).await;
    let g1 = uuid(&inventory, 1);
    let manager = s.manager.clone();
    let g = g1.clone();
    let log = tokio::task::spawn_blocking(move || {
        let mut h = common::Harness::new(coxswain_node_agent::runtime::RuntimeKind::Runc);
        h.deps.devices = Arc::new(manager);
        let uid = common::uid();
        let mut pod = common::pod(
            &uid,
            serde_json::json!({"restartPolicy": "Never", "containers": [{
                "name": "main", "image": "busybox",
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
                "command": ["sh", "-c", concat!(
                    "echo visible=$NVIDIA_VISIBLE_DEVICES; ls /dev | grep nvidia; ",
                    "cat /dev/nvidia1 2>&1 | sed 's/^/own: /'; ",
                    "mknod /tmp/n0 c 195 0 && cat /tmp/n0 2>&1 | sed 's/^/other: /'")],
            }]}),
        );
        pod.metadata.annotations =
            Some([("coxswain.dev/gpu-devices".to_string(), format!("[\"{g}\"]"))].into());
        let mut w = h.worker(pod);
        let status = common::drive(&mut w, |st| {
            matches!(common::phase(st), "Succeeded" | "Failed")
        });
        let log = std::fs::read_to_string(h.deps.config.pod_dir(&uid).join("logs/main/0.log"))
            .unwrap_or_else(|e| format!("no log ({e}): {status:#?}"));
        common::remove(&mut w, &h.clock);
        log
    })
    .await
    .unwrap();
    assert!(log.contains(&format!("visible={g1}")), "{log}");
    assert!(
        log.contains("nvidia1") && log.contains("nvidiactl"),
        "{log}"
    );
    assert!(
        !log.contains("nvidia0\n") && !log.contains("nvidia2"),
        "{log}"
    );
    // Allowed but driverless: ENXIO. Not allowed by the device cgroup: EPERM.
    assert!(
        log.contains("own: cat: can't open '/dev/nvidia1': No such device or address"),
        "{log}"
    );
    assert!(
        log.contains("other: cat: can't open '/tmp/n0': Operation not permitted"),
        "{log}"
    );
    assert!(
        s.manager.allocations().is_empty(),
        "removing the pod releases its GPU"
    );
    s.cancel.cancel();
}

fn share_pod(uid: &str, annotation: &str, milli: u32) -> (Pod, Container) {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": uid, "uid": uid,
                     "annotations": {"coxswain.dev/gpu-devices": annotation}},
        "spec": {"containers": [{
            "name": "infer", "image": "busybox",
            "resources": {"limits": {"coxswain.dev/gpu-milli": milli.to_string()}},
        }]},
    }))
    .unwrap();
    let container = pod.spec.as_ref().unwrap().containers[0].clone();
    (pod, container)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gpu_shares_fit_within_one_gpu_and_keep_a_whole_pod_off_it() {
    let s = Setup::new().await;
    let _plugin = Plugin::spawn(s.root(), "pcie-4x");
    let inventory = wait_inventory(&s.manager, "4 GPUs", |i| gpus(i) == 4).await;
    let g0 = uuid(&inventory, 0);
    let (a, ca) = share_pod("share-a", &format!("[\"{g0}:250\"]"), 250);
    let (b, cb) = share_pod("share-b", &format!("[\"{g0}:750\"]"), 750);
    for (pod, c) in [(&a, &ca), (&b, &cb)] {
        let spec = prepare(&s.manager, pod, c).await.unwrap();
        assert_eq!(env(&spec, "NVIDIA_VISIBLE_DEVICES"), Some(g0.clone()));
        assert_eq!(nodes_and_rules(&spec).1, vec![(195, 0), (195, 255)]);
    }
    let (c3, cc) = share_pod("share-c", &format!("[\"{g0}:100\"]"), 100);
    let err = prepare(&s.manager, &c3, &cc).await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!("device {g0} is already allocated to pod share-a")
    );
    let (whole, cw) = gpu_pod("whole", 1, Some(vec![g0.clone()]));
    assert!(prepare(&s.manager, &whole, &cw).await.is_err());
    s.manager.release_pod("share-b");
    prepare(&s.manager, &c3, &cc).await.unwrap();
    s.cancel.cancel();
}
