//! Applying what a device plugin answered to a container's OCI spec: device nodes
//! (`linux.devices`, with type and numbers from a stat of the host node) each with a
//! device-cgroup allow rule for exactly that node (the spec's default deny stays
//! first, so every other device stays denied), environment variables (overriding
//! the container's own of the same name), bind mounts and annotations.

use std::collections::BTreeMap;
use std::path::Path;

use coxswain_proto::deviceplugin::v1beta1::ContainerAllocateResponse;
use oci_spec::runtime::{
    LinuxBuilder, LinuxDeviceBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxResourcesBuilder, MountBuilder, Spec,
};

use super::Error;

/// A device node to create in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNodeEdit {
    /// The node on the host.
    pub host_path: String,
    /// Where it appears in the container.
    pub container_path: String,
    /// Device-cgroup access, some of `rwm`.
    pub permissions: String,
    /// Type and numbers when known (CDI may give them); else read from the host node.
    pub known: Option<NodeInfo>,
}

/// A bind mount to add to the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEdit {
    /// The host path.
    pub host_path: String,
    /// Where it appears in the container.
    pub container_path: String,
    /// Mount options (`ro`, `rbind`, …).
    pub options: Vec<String>,
}

/// Everything to add to a container's spec for its devices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEdits {
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Device nodes.
    pub device_nodes: Vec<DeviceNodeEdit>,
    /// Bind mounts.
    pub mounts: Vec<MountEdit>,
    /// OCI annotations.
    pub annotations: BTreeMap<String, String>,
}

impl ContainerEdits {
    /// Appends `other`.
    pub fn extend(&mut self, other: ContainerEdits) {
        self.env.extend(other.env);
        self.device_nodes.extend(other.device_nodes);
        self.mounts.extend(other.mounts);
        self.annotations.extend(other.annotations);
    }

    /// The edits of a plugin's answer, apart from its CDI devices.
    pub fn from_response(r: &ContainerAllocateResponse) -> Self {
        let mut env: Vec<String> = r.envs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.sort();
        Self {
            env,
            device_nodes: r
                .devices
                .iter()
                .map(|d| DeviceNodeEdit {
                    host_path: d.host_path.clone(),
                    container_path: if d.container_path.is_empty() {
                        d.host_path.clone()
                    } else {
                        d.container_path.clone()
                    },
                    permissions: d.permissions.clone(),
                    known: None,
                })
                .collect(),
            mounts: r
                .mounts
                .iter()
                .map(|m| MountEdit {
                    host_path: m.host_path.clone(),
                    container_path: m.container_path.clone(),
                    options: vec![
                        "rbind".into(),
                        "rprivate".into(),
                        if m.read_only { "ro" } else { "rw" }.into(),
                    ],
                })
                .collect(),
            annotations: r
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// A device node's type, numbers and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    /// Character or block.
    pub block: bool,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Permission bits.
    pub mode: u32,
}

/// Reads device nodes on the host (a seam: unit tests use a fake).
pub trait NodeStat: Send + Sync {
    /// The node at `path`; an error when it is missing or not a device.
    fn stat(&self, path: &Path) -> Result<NodeInfo, String>;
}

/// The host's device nodes, read with `stat(2)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostDeviceNodes;

impl NodeStat for HostDeviceNodes {
    fn stat(&self, path: &Path) -> Result<NodeInfo, String> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        let kind = meta.file_type();
        if !kind.is_char_device() && !kind.is_block_device() {
            return Err("not a character or block device".into());
        }
        let dev = meta.rdev();
        Ok(NodeInfo {
            block: kind.is_block_device(),
            major: (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as i64,
            minor: ((dev & 0xff) | ((dev >> 12) & !0xff)) as i64,
            mode: meta.mode() & 0o7777,
        })
    }
}

fn check_permissions(node: &DeviceNodeEdit) -> Result<String, Error> {
    let permissions = if node.permissions.is_empty() {
        "rwm".to_string()
    } else {
        node.permissions.clone()
    };
    if !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(Error::DeviceNode {
            path: node.host_path.clone(),
            message: format!("permissions {permissions:?}: must be some of \"rwm\""),
        });
    }
    Ok(permissions)
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Applies `edits` to `spec`, reading device nodes through `stat`.
pub fn apply_edits(
    spec: &mut Spec,
    edits: &ContainerEdits,
    stat: &dyn NodeStat,
) -> Result<(), Error> {
    if let Some(process) = spec.process_mut() {
        let mut env = process.env().clone().unwrap_or_default();
        for entry in &edits.env {
            env.retain(|e| env_key(e) != env_key(entry));
            env.push(entry.clone());
        }
        process.set_env(Some(env));
    }
    let mut devices = Vec::new();
    let mut rules = Vec::new();
    for node in &edits.device_nodes {
        let permissions = check_permissions(node)?;
        let info = match node.known {
            Some(info) => info,
            None => stat
                .stat(Path::new(&node.host_path))
                .map_err(|message| Error::DeviceNode {
                    path: node.host_path.clone(),
                    message,
                })?,
        };
        let typ = if info.block {
            LinuxDeviceType::B
        } else {
            LinuxDeviceType::C
        };
        devices.push(
            LinuxDeviceBuilder::default()
                .path(node.container_path.clone())
                .typ(typ)
                .major(info.major)
                .minor(info.minor)
                .file_mode(info.mode)
                .uid(0u32)
                .gid(0u32)
                .build()?,
        );
        rules.push(
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(typ)
                .major(info.major)
                .minor(info.minor)
                .access(permissions)
                .build()?,
        );
    }
    if !devices.is_empty() {
        let empty_linux = LinuxBuilder::default().build()?;
        let linux = spec.linux_mut().get_or_insert(empty_linux);
        linux
            .devices_mut()
            .get_or_insert_with(Vec::new)
            .extend(devices);
        let empty_resources = LinuxResourcesBuilder::default().build()?;
        let resources = linux.resources_mut().get_or_insert(empty_resources);
        // Appended after the spec's leading deny-all rule: later rules win.
        resources
            .devices_mut()
            .get_or_insert_with(Vec::new)
            .extend(rules);
    }
    if !edits.mounts.is_empty() {
        let mounts = spec.mounts_mut().get_or_insert_with(Vec::new);
        for m in &edits.mounts {
            mounts.push(
                MountBuilder::default()
                    .destination(m.container_path.clone())
                    .typ("bind")
                    .source(m.host_path.clone())
                    .options(m.options.clone())
                    .build()?,
            );
        }
    }
    if !edits.annotations.is_empty() {
        spec.annotations_mut()
            .get_or_insert_with(Default::default)
            .extend(edits.annotations.clone());
    }
    Ok(())
}
