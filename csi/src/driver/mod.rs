//! The node-local CSI driver: one [`Driver`] holds the volume records and
//! the [`Mounter`], and the Identity, Controller and Node services share it.
//!
//! Every RPC runs its logic synchronously on the blocking pool under one
//! lock: mounts and `mkfs` block, and serialising a node's volume
//! operations makes idempotency simple (a retried call sees the finished
//! state of the first).

mod capability;
pub mod controller;
mod ephemeral;
pub mod identity;
mod mounts;
pub mod node;
mod provision;
pub mod state;
pub mod usage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tonic::Status;

use crate::Error;
use crate::mounter::Mounter;
pub use ephemeral::EPHEMERAL_CONTEXT;
pub use provision::parse_bytes;
use state::{Backing, StateDir, VolumeRecord};

/// The driver's name, as GetPluginInfo reports it.
pub const DRIVER_NAME: &str = "csi.coxswain.dev";
/// The topology key whose value is the node a volume lives on.
pub const TOPOLOGY_KEY: &str = "topology.csi.coxswain.dev/node";

/// How the driver is set up.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Driver name (`csi.coxswain.dev`).
    pub name: String,
    /// This node's ID, reported by NodeGetInfo and in topology.
    pub node_id: String,
    /// Where records, image files and directory volumes live.
    pub state_dir: PathBuf,
    /// Bytes this node may provision in total; `None`: the free space of the
    /// state directory's filesystem.
    pub capacity_bytes: Option<u64>,
    /// Size of a volume whose CreateVolume gives no capacity range.
    pub default_size_bytes: u64,
}

impl DriverConfig {
    /// A config with the default name and a 1 GiB default volume size.
    pub fn new(node_id: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: DRIVER_NAME.to_string(),
            node_id: node_id.into(),
            state_dir: state_dir.into(),
            capacity_bytes: None,
            default_size_bytes: 1 << 30,
        }
    }
}

/// The CSI driver shared by its three services.
#[derive(Debug)]
pub struct Driver {
    config: DriverConfig,
    dir: StateDir,
    volumes: Mutex<BTreeMap<String, VolumeRecord>>,
    mounter: Arc<dyn Mounter>,
}

impl Driver {
    /// Opens the state directory, loads the volume records and detaches
    /// loop devices a killed driver left behind for volumes not staged.
    pub fn open(config: DriverConfig, mounter: Arc<dyn Mounter>) -> Result<Arc<Self>, Error> {
        let dir = StateDir::open(&config.state_dir)?;
        let volumes = dir.load_all()?;
        let driver = Self {
            config,
            dir,
            volumes: Mutex::new(volumes),
            mounter,
        };
        driver.recover()?;
        Ok(Arc::new(driver))
    }

    /// The driver's configuration.
    pub fn config(&self) -> &DriverConfig {
        &self.config
    }

    fn recover(&self) -> Result<(), Error> {
        let volumes = self.lock();
        for record in volumes.values() {
            if record.backing != Backing::Image || record.staged.is_some() {
                continue;
            }
            let image = self.dir.image_path(&record.id);
            for device in self.mounter.loop_devices(&image)? {
                tracing::warn!(volume = %record.id, device = %device.display(), "detaching leaked loop device");
                self.mounter.loop_detach(&device)?;
            }
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, VolumeRecord>> {
        // A panic mid-operation leaves records as persisted; keep serving.
        self.volumes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` on the blocking pool and maps its error to a gRPC status.
    async fn blocking<T, F>(self: &Arc<Self>, op: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Driver) -> Result<T, Error> + Send + 'static,
    {
        let driver = self.clone();
        let result = tokio::task::spawn_blocking(move || op(&driver))
            .await
            .map_err(|e| Error::Task(e.to_string()))
            .and_then(|r| r);
        result.map_err(|e| {
            tracing::debug!(error = %e, "request failed");
            Status::from(e)
        })
    }

    /// The accessible topology of every volume: this node.
    fn topology(&self) -> coxswain_proto::csi::v1::Topology {
        coxswain_proto::csi::v1::Topology {
            segments: [(TOPOLOGY_KEY.to_string(), self.config.node_id.clone())]
                .into_iter()
                .collect(),
        }
    }

    /// Bytes that can still be provisioned on this node.
    fn available_bytes(&self, volumes: &BTreeMap<String, VolumeRecord>) -> Result<u64, Error> {
        let committed: u64 = volumes.values().map(|v| v.capacity_bytes).sum();
        match self.config.capacity_bytes {
            Some(limit) => Ok(limit.saturating_sub(committed)),
            // Image files are sparse: count what they may still grow into.
            None => {
                let free = self.mounter.usage(self.dir.root())?.available_bytes;
                let allocated: u64 = volumes
                    .values()
                    .filter(|v| v.backing == Backing::Image)
                    .map(|v| allocated_bytes(&self.dir.image_path(&v.id)))
                    .sum();
                Ok(free.saturating_sub(committed.saturating_sub(allocated)))
            }
        }
    }
}

/// Bytes of disk an (sparse) image file occupies.
fn allocated_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// A volume ID derived from the CO's name: stable, so that a CreateVolume
/// retried after a crash reuses the half-made image file.
fn volume_id(name: &str) -> String {
    // FNV-1a, 64 bits: stable across Rust releases, unlike DefaultHasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("cox-{hash:016x}")
}

#[cfg(test)]
mod tests;
