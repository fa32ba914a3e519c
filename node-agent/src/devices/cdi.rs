//! Container Device Interface (CDI) specs: resolving a fully qualified device name
//! (`vendor.com/class=device`, as a plugin returns it in `cdi_devices`) to the edits
//! the spec gives it — the device's own `containerEdits` plus the spec's top-level
//! ones (env, deviceNodes, mounts). Specs are JSON or YAML files in `/etc/cdi` and
//! `/var/run/cdi`; a later directory overrides an earlier one for the same name,
//! as in CDI. Hooks are not run (none of coxswain's plugins need them).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Error;
use super::apply::{ContainerEdits, DeviceNodeEdit, MountEdit, NodeInfo};

/// Directories searched for CDI specs, in CDI's order of precedence (later wins).
pub const CDI_SPEC_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];

#[derive(Debug, Deserialize)]
struct CdiSpec {
    kind: String,
    #[serde(default)]
    devices: Vec<CdiDevice>,
    #[serde(default, rename = "containerEdits")]
    container_edits: CdiEdits,
}

#[derive(Debug, Deserialize)]
struct CdiDevice {
    name: String,
    #[serde(default, rename = "containerEdits")]
    container_edits: CdiEdits,
}

#[derive(Debug, Default, Deserialize)]
struct CdiEdits {
    #[serde(default)]
    env: Vec<String>,
    #[serde(default, rename = "deviceNodes")]
    device_nodes: Vec<CdiDeviceNode>,
    #[serde(default)]
    mounts: Vec<CdiMount>,
}

#[derive(Debug, Deserialize)]
struct CdiDeviceNode {
    path: String,
    #[serde(rename = "hostPath")]
    host_path: Option<String>,
    #[serde(rename = "type")]
    typ: Option<String>,
    major: Option<i64>,
    minor: Option<i64>,
    #[serde(rename = "fileMode")]
    file_mode: Option<u32>,
    permissions: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CdiMount {
    #[serde(rename = "hostPath")]
    host_path: String,
    #[serde(rename = "containerPath")]
    container_path: String,
    #[serde(default)]
    options: Vec<String>,
}

impl CdiEdits {
    fn into_edits(self) -> ContainerEdits {
        ContainerEdits {
            env: self.env,
            device_nodes: self
                .device_nodes
                .into_iter()
                .map(|n| {
                    let known = match (n.typ.as_deref(), n.major, n.minor) {
                        (Some(t @ ("c" | "b" | "u")), Some(major), Some(minor)) => Some(NodeInfo {
                            block: t == "b",
                            major,
                            minor,
                            mode: n.file_mode.unwrap_or(0o666),
                        }),
                        _ => None,
                    };
                    DeviceNodeEdit {
                        host_path: n.host_path.unwrap_or_else(|| n.path.clone()),
                        container_path: n.path,
                        permissions: n.permissions.unwrap_or_default(),
                        known,
                    }
                })
                .collect(),
            mounts: self
                .mounts
                .into_iter()
                .map(|m| MountEdit {
                    host_path: m.host_path,
                    container_path: m.container_path,
                    options: if m.options.is_empty() {
                        vec!["rbind".into(), "rprivate".into()]
                    } else {
                        m.options
                    },
                })
                .collect(),
            annotations: Default::default(),
        }
    }
}

/// Resolves CDI device names against the specs in a set of directories.
#[derive(Debug, Clone)]
pub struct CdiResolver {
    dirs: Vec<PathBuf>,
}

impl Default for CdiResolver {
    fn default() -> Self {
        Self::new(CDI_SPEC_DIRS.iter().map(PathBuf::from).collect())
    }
}

fn spec_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "json" | "yaml" | "yml"))
        })
        .collect();
    paths.sort();
    paths
}

impl CdiResolver {
    /// A resolver over `dirs` (searched in order, later wins).
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self { dirs }
    }

    /// The edits for the fully qualified device `name` (`vendor.com/class=device`).
    /// Specs are read at each call, so a spec written after the agent started counts.
    pub fn resolve(&self, name: &str) -> Result<ContainerEdits, Error> {
        let cdi_error = |message: String| Error::Cdi {
            name: name.to_string(),
            message,
        };
        let (kind, device) = name
            .split_once('=')
            .filter(|(k, d)| k.contains('/') && !k.starts_with('/') && !d.is_empty())
            .ok_or_else(|| {
                cdi_error("not a fully qualified CDI name (vendor.com/class=device)".into())
            })?;
        let mut found = None;
        for dir in &self.dirs {
            for path in spec_files(dir) {
                let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                // YAML is a superset of JSON: one parser reads both forms.
                let spec: CdiSpec = match yaml_serde::from_str(&text) {
                    Ok(spec) => spec,
                    Err(e) => {
                        tracing::warn!(spec = %path.display(), error = %e, "skipping unreadable CDI spec");
                        continue;
                    }
                };
                if spec.kind != kind {
                    continue;
                }
                let CdiSpec {
                    devices,
                    container_edits,
                    ..
                } = spec;
                if let Some(d) = devices.into_iter().find(|d| d.name == device) {
                    let mut edits = d.container_edits.into_edits();
                    edits.extend(container_edits.into_edits());
                    found = Some(edits);
                }
            }
        }
        found.ok_or_else(|| {
            let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
            cdi_error(format!("no CDI spec in {} defines it", dirs.join(", ")))
        })
    }
}
