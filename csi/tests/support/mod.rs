//! Fixtures for the root integration tests: a `cox-csi` process on a Unix
//! socket in a temporary directory, CSI calls in one line each, and a guard
//! that unmounts and detaches whatever a failed test left behind.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use coxswain_csi::CsiClient;
use coxswain_csi::mounter::mountinfo;
use coxswain_proto::csi::v1::volume_capability::access_mode::Mode;
use coxswain_proto::csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use coxswain_proto::csi::v1::*;

/// Fails the test, with what to do, unless it runs as root with the tools.
pub fn require_root() {
    let root = nix::unistd::Uid::effective().is_root();
    let tools = ["losetup", "mkfs.ext4", "resize2fs"].iter().all(|t| {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(t).exists())
    });
    assert!(
        root && tools,
        "these tests make real loop devices and mounts: run scripts/setup.sh as root \
         (installs e2fsprogs and util-linux) and run the tests as root (root: {root}, tools: {tools})"
    );
}

/// A running `cox-csi` and the directory it lives in.
pub struct Fixture {
    /// The driver process; `None` after [`Fixture::kill`].
    pub child: Option<Child>,
    /// The client of the current process.
    pub client: CsiClient,
    /// `unix://` endpoint.
    pub endpoint: String,
    /// Unmounts and detaches on drop; before `tmp` goes.
    guard: Guard,
    /// The temporary directory (state, socket, staging and target paths).
    pub tmp: tempfile::TempDir,
}

/// Unmounts everything under a directory and detaches loop devices of its images.
pub struct Guard(pub PathBuf);

impl Drop for Guard {
    fn drop(&mut self) {
        let mut points: Vec<PathBuf> = mountinfo::mount_points()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.starts_with(&self.0))
            .collect();
        points.reverse();
        for point in points {
            let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
        }
        for image in leaked_loops(&self.0) {
            let _ = Command::new("losetup").args(["-d", &image]).status();
        }
    }
}

/// Loop devices (`/dev/loopN`) whose backing file is under `dir`.
pub fn leaked_loops(dir: &Path) -> Vec<String> {
    let out = Command::new("losetup")
        .args(["-a", "-n", "-O", "NAME,BACK-FILE"])
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let dir = dir.display().to_string();
    text.lines()
        .filter(|l| l.contains(&dir))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Mount points under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mountinfo::mount_points()
        .unwrap()
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect()
}

impl Fixture {
    /// Starts `cox-csi` with 1 GiB of capacity in a fresh temporary directory.
    pub async fn start() -> Result<Self> {
        require_root();
        let tmp = tempfile::Builder::new().prefix("cox-csi-test").tempdir()?;
        let endpoint = format!("unix://{}", tmp.path().join("csi.sock").display());
        let guard = Guard(tmp.path().to_path_buf());
        let (child, client) = spawn(&endpoint, tmp.path()).await?;
        Ok(Self {
            child: Some(child),
            client,
            endpoint,
            guard,
            tmp,
        })
    }

    /// A path under the temporary directory.
    pub fn path(&self, name: &str) -> String {
        self.tmp.path().join(name).display().to_string()
    }

    /// SIGKILLs the driver.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the driver again on the same state directory.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill()?;
        let (child, client) = spawn(&self.endpoint, self.tmp.path()).await?;
        self.child = Some(child);
        self.client = client;
        Ok(())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

async fn spawn(endpoint: &str, dir: &Path) -> Result<(Child, CsiClient)> {
    let child = Command::new(env!("CARGO_BIN_EXE_cox-csi"))
        .args([
            "--endpoint",
            endpoint,
            "--node-id",
            "test-node",
            "--capacity",
            "1Gi",
        ])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting cox-csi")?;
    let client = CsiClient::wait_ready(endpoint, Duration::from_secs(20)).await?;
    Ok((child, client))
}

/// A writable single-node mount capability.
pub fn writer() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

/// CreateVolume of `bytes`; returns the volume ID.
pub async fn create(c: &CsiClient, name: &str, bytes: i64) -> Result<String> {
    let req = CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![writer()],
        ..Default::default()
    };
    let resp = c.controller.clone().create_volume(req).await?.into_inner();
    Ok(resp.volume.context("no volume")?.volume_id)
}

/// NodeStageVolume.
pub async fn stage(c: &CsiClient, id: &str, staging: &str) -> Result<()> {
    let req = NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.into(),
        volume_capability: Some(writer()),
        ..Default::default()
    };
    c.node.clone().node_stage_volume(req).await?;
    Ok(())
}

/// NodePublishVolume.
pub async fn publish(
    c: &CsiClient,
    id: &str,
    staging: &str,
    target: &str,
    readonly: bool,
) -> Result<()> {
    let req = NodePublishVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.into(),
        target_path: target.into(),
        volume_capability: Some(writer()),
        readonly,
        ..Default::default()
    };
    c.node.clone().node_publish_volume(req).await?;
    Ok(())
}

/// NodeUnpublishVolume.
pub async fn unpublish(c: &CsiClient, id: &str, target: &str) -> Result<()> {
    let req = NodeUnpublishVolumeRequest {
        volume_id: id.into(),
        target_path: target.into(),
    };
    c.node.clone().node_unpublish_volume(req).await?;
    Ok(())
}

/// NodeUnstageVolume.
pub async fn unstage(c: &CsiClient, id: &str, staging: &str) -> Result<()> {
    let req = NodeUnstageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.into(),
    };
    c.node.clone().node_unstage_volume(req).await?;
    Ok(())
}

/// DeleteVolume.
pub async fn delete(c: &CsiClient, id: &str) -> Result<()> {
    let req = DeleteVolumeRequest {
        volume_id: id.into(),
        ..Default::default()
    };
    c.controller.clone().delete_volume(req).await?;
    Ok(())
}
