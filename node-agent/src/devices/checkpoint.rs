//! The device checkpoint, `<plugin-dir>/checkpoint.json`: for every pod (by uid)
//! and container, the devices allocated per resource and the plugin's `Allocate`
//! answer. Written atomically (temp file, fsync, rename) after every change and
//! loaded on start, so a restarted agent keeps running pods' devices, reapplies
//! the same answer when a container restarts, and never allocates a held device
//! to another pod.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use coxswain_proto::deviceplugin::v1beta1::{
    CdiDevice, ContainerAllocateResponse, DeviceSpec, Mount,
};
use serde::{Deserialize, Serialize};

use super::Error;

/// The checkpoint file name inside the plugin directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
const VERSION: u32 = 1;

/// Every pod's devices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version (1).
    pub version: u32,
    /// Pod uid → its devices.
    pub pods: BTreeMap<String, PodDevices>,
}

/// One pod's devices, per container name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodDevices {
    /// The pod's namespace (for events about it; empty in checkpoints written before).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The pod's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Container name → one allocation per resource it requests.
    pub containers: BTreeMap<String, Vec<ContainerAllocation>>,
}

/// The devices of one resource allocated to one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerAllocation {
    /// The resource the container requests (`nvidia.com/gpu`, `coxswain.dev/gpu-milli`).
    pub resource: String,
    /// The plugin's resource that was asked to `Allocate` (`nvidia.com/gpu` for shares too).
    pub plugin_resource: String,
    /// The devices, each with the thousandths of it held (1000 for a whole device).
    pub devices: Vec<HeldDevice>,
    /// The plugin's answer, reapplied as is when the container restarts.
    pub response: AllocateResponseRecord,
}

/// A device and how much of it is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldDevice {
    /// The device-plugin device ID.
    pub id: String,
    /// Thousandths held: 1000 for a whole device.
    pub milli: u16,
}

/// A `v1beta1.ContainerAllocateResponse` in JSON form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AllocateResponseRecord {
    /// Environment variables.
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    /// Mounts: (container path, host path, read-only).
    #[serde(default)]
    pub mounts: Vec<(String, String, bool)>,
    /// Device nodes: (container path, host path, permissions).
    #[serde(default)]
    pub devices: Vec<(String, String, String)>,
    /// Container annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Fully qualified CDI device names.
    #[serde(default)]
    pub cdi_devices: Vec<String>,
}

impl From<&ContainerAllocateResponse> for AllocateResponseRecord {
    fn from(r: &ContainerAllocateResponse) -> Self {
        Self {
            envs: r.envs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            mounts: r
                .mounts
                .iter()
                .map(|m| (m.container_path.clone(), m.host_path.clone(), m.read_only))
                .collect(),
            devices: r
                .devices
                .iter()
                .map(|d| {
                    (
                        d.container_path.clone(),
                        d.host_path.clone(),
                        d.permissions.clone(),
                    )
                })
                .collect(),
            annotations: r
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cdi_devices: r.cdi_devices.iter().map(|c| c.name.clone()).collect(),
        }
    }
}

impl From<&AllocateResponseRecord> for ContainerAllocateResponse {
    fn from(r: &AllocateResponseRecord) -> Self {
        Self {
            envs: r.envs.clone().into_iter().collect(),
            mounts: r
                .mounts
                .iter()
                .map(|(c, h, ro)| Mount {
                    container_path: c.clone(),
                    host_path: h.clone(),
                    read_only: *ro,
                })
                .collect(),
            devices: r
                .devices
                .iter()
                .map(|(c, h, p)| DeviceSpec {
                    container_path: c.clone(),
                    host_path: h.clone(),
                    permissions: p.clone(),
                })
                .collect(),
            annotations: r.annotations.clone().into_iter().collect(),
            cdi_devices: r
                .cdi_devices
                .iter()
                .map(|name| CdiDevice { name: name.clone() })
                .collect(),
        }
    }
}

impl Checkpoint {
    /// Path of the checkpoint in `plugin_dir`.
    pub fn path(plugin_dir: &Path) -> PathBuf {
        plugin_dir.join(CHECKPOINT_FILE)
    }

    /// Loads the checkpoint; a missing file is an empty checkpoint.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::empty()),
            Err(e) => return Err(Error::io(path, e)),
        };
        let checkpoint: Self = serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("{e} (move the file away to start without allocations)"),
        })?;
        if checkpoint.version != VERSION {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "version {} is not supported (expected {VERSION})",
                    checkpoint.version
                ),
            });
        }
        Ok(checkpoint)
    }

    /// An empty checkpoint of the current version.
    pub fn empty() -> Self {
        Self {
            version: VERSION,
            pods: BTreeMap::new(),
        }
    }

    /// Writes the checkpoint atomically: a temp file beside it, fsynced, renamed over.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        file.write_all(&text).map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// How much of each device each pod holds: device ID → pod uid → thousandths.
    /// A pod whose containers share a device counts it once.
    pub fn holders(&self) -> BTreeMap<String, BTreeMap<String, u16>> {
        let mut holders: BTreeMap<String, BTreeMap<String, u16>> = BTreeMap::new();
        for (uid, pod) in &self.pods {
            for held in pod.containers.values().flatten().flat_map(|a| &a.devices) {
                let milli = holders
                    .entry(held.id.clone())
                    .or_default()
                    .entry(uid.clone())
                    .or_default();
                *milli = (*milli).max(held.milli);
            }
        }
        holders
    }

    /// Drops the pods whose uid is not in `live`; returns whether anything changed.
    pub fn retain_pods(&mut self, live: &BTreeSet<String>) -> bool {
        let before = self.pods.len();
        self.pods.retain(|uid, _| live.contains(uid));
        self.pods.len() != before
    }
}
