//! Shared by the `csi_*` tests: the real `cox-csi` driver as a process (found next
//! to the test binary, else built once), static PersistentVolumes made by the test
//! (CreateVolume on the driver, a PV with a csi source and claimRef, a claim with
//! volumeName, both Bound), and what is left on the host: mounts of a pod in
//! `/proc/self/mountinfo`, loop devices of the driver's images (`losetup -a`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use coxswain_csi::CsiClient;
use coxswain_proto::csi::v1::volume_capability::access_mode::Mode;
use coxswain_proto::csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use coxswain_proto::csi::v1::{CapacityRange, CreateVolumeRequest, VolumeCapability};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, Patch, PatchParams, PostParams};

/// The driver's name.
pub const DRIVER: &str = "csi.coxswain.dev";

fn find_or_build_driver() -> PathBuf {
    let find = || {
        std::env::current_exe()
            .ok()?
            .ancestors()
            .map(|dir| dir.join("cox-csi"))
            .find(|p| p.is_file())
    };
    if let Some(path) = find() {
        return path;
    }
    eprintln!("cox-csi not built yet: running cargo build -p coxswain-csi");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "coxswain-csi", "--bin", "cox-csi"])
        .status();
    find().unwrap_or_else(|| {
        panic!(
            "THE cox-csi BINARY IS MISSING and building it failed ({status:?}): \
             run `cargo build -p coxswain-csi` before these tests"
        )
    })
}

/// A `cox-csi` process; SIGKILLed on drop.
pub struct DriverProcess {
    child: Child,
    dir: PathBuf,
    /// Its socket.
    pub socket: PathBuf,
    /// Its state directory (images under `images/`).
    pub state: PathBuf,
}

impl DriverProcess {
    /// Starts the driver for node `node` with its socket and state under `dir`.
    pub fn start(dir: &Path, node: &str) -> Self {
        let socket = dir.join("csi.sock");
        let state = dir.join("csi-state");
        let child = Command::new(find_or_build_driver())
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .args(["--node-id", node, "--capacity", "1Gi"])
            .arg("--state-dir")
            .arg(&state)
            .spawn()
            .expect("starting cox-csi");
        Self {
            child,
            dir: dir.to_path_buf(),
            socket,
            state,
        }
    }

    /// `NAME=unix:///path`, as `--csi-driver` takes it.
    pub fn flag(&self) -> String {
        format!("{DRIVER}=unix://{}", self.socket.display())
    }

    /// A client, once the driver answers.
    pub async fn client(&self) -> CsiClient {
        CsiClient::wait_ready(
            &format!("unix://{}", self.socket.display()),
            Duration::from_secs(30),
        )
        .await
        .expect("cox-csi did not come up")
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DriverProcess {
    /// Kills the driver; after a failed test, also unmounts what is left under
    /// the test's directory and detaches its images' loop devices.
    fn drop(&mut self) {
        self.kill();
        let mut left = mounts_containing(&self.dir.to_string_lossy());
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in left {
            let _ = nix::mount::umount2(mount.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        detach_loops_under(&self.state);
    }
}

/// Creates a `mib` MiB image volume on the driver; returns its ID.
pub async fn create_volume(client: &mut CsiClient, name: &str, mib: i64) -> String {
    let request = CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: mib << 20,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![VolumeCapability {
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
            access_type: Some(AccessType::Mount(MountVolume::default())),
        }],
        parameters: HashMap::from([("backing".to_string(), "image".to_string())]),
        ..Default::default()
    };
    let created = client.controller.create_volume(request).await.unwrap();
    created.into_inner().volume.unwrap().volume_id
}

/// A static PV `pv` for `volume_id` pre-bound to claim `claim`, and the claim bound to it.
pub async fn bind_static(
    client: &kube::Client,
    claim: &str,
    pv: &str,
    volume_id: &str,
    size: &str,
) {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let volume: PersistentVolume = serde_json::from_value(serde_json::json!({
        "metadata": {"name": pv},
        "spec": {
            "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
            "csi": {"driver": DRIVER, "volumeHandle": volume_id, "fsType": "ext4"},
            "claimRef": {"namespace": "default", "name": claim},
        },
    }))
    .unwrap();
    pvs.create(&PostParams::default(), &volume)
        .await
        .unwrap_or_else(|e| panic!("creating PV {pv}: {e}"));
    let object: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": claim, "namespace": "default"},
        "spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
            "resources": {"requests": {"storage": size}},
        },
    }))
    .unwrap();
    claims
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("creating claim {claim}: {e}"));
    let bound = Patch::Merge(serde_json::json!({"status": {"phase": "Bound"}}));
    pvs.patch_status(pv, &PatchParams::default(), &bound)
        .await
        .unwrap_or_else(|e| panic!("PV {pv} status: {e}"));
    claims
        .patch_status(claim, &PatchParams::default(), &bound)
        .await
        .unwrap_or_else(|e| panic!("claim {claim} status: {e}"));
}

/// A busybox pod (restartPolicy Never) running `script` with claim `claim` at `/data`.
pub fn claim_pod(claim: &str, script: &str) -> serde_json::Value {
    serde_json::json!({
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "main", "image": "busybox", "command": ["sh", "-c", script],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
    })
}

/// Mount points in `/proc/self/mountinfo` whose path contains `needle`.
pub fn mounts_containing(needle: &str) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.contains(needle))
        .map(str::to_string)
        .collect()
}

/// `losetup -a` lines naming a file under `dir`.
pub fn loops_under(dir: &Path) -> Vec<String> {
    let out = Command::new("losetup").arg("-a").output().expect("losetup");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&*dir.to_string_lossy()))
        .map(str::to_string)
        .collect()
}

/// Detaches every loop device of a file under `dir` (what a reboot does).
pub fn detach_loops_under(dir: &Path) {
    for line in loops_under(dir) {
        if let Some(device) = line.split(':').next() {
            let _ = Command::new("losetup").args(["-d", device]).status();
        }
    }
}
