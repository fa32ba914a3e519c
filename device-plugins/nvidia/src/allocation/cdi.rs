//! CDI (Container Device Interface) specs for NVIDIA GPUs, as written by
//! `nvidia-ctk cdi generate` into `/etc/cdi` or `/var/run/cdi`. Where a spec
//! of kind `nvidia.com/gpu` names a GPU (by UUID or by index), `Allocate`
//! returns the CDI name and lets the runtime inject what the spec says.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::gpu::GpuInfo;

/// Directories searched for CDI specs, in CDI's order.
pub const CDI_SPEC_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];
/// The CDI kind of whole NVIDIA GPUs.
pub const CDI_KIND: &str = "nvidia.com/gpu";

/// The device names found in `nvidia.com/gpu` CDI specs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdiIndex {
    names: BTreeSet<String>,
    specs: Vec<PathBuf>,
}

impl CdiIndex {
    /// Reads every `*.json`/`*.yaml`/`*.yml` spec in `dirs`; unreadable or
    /// foreign specs are skipped (logged), missing directories are normal.
    pub fn load(dirs: &[&Path]) -> Self {
        let mut index = CdiIndex::default();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths {
                let is_spec = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "json" | "yaml" | "yml"));
                if is_spec {
                    index.read_spec(&path);
                }
            }
        }
        index
    }

    fn read_spec(&mut self, path: &Path) {
        let spec: yaml_serde::Value = match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| yaml_serde::from_str(&text).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(spec = %path.display(), error = %e, "skipping unreadable CDI spec");
                return;
            }
        };
        if spec.get("kind").and_then(|k| k.as_str()) != Some(CDI_KIND) {
            return;
        }
        let devices = spec.get("devices").and_then(|d| d.as_sequence());
        for device in devices.into_iter().flatten() {
            if let Some(name) = device.get("name").and_then(|n| n.as_str()) {
                self.names.insert(name.to_string());
            }
        }
        self.specs.push(path.to_path_buf());
    }

    /// The spec files that contributed names.
    pub fn specs(&self) -> &[PathBuf] {
        &self.specs
    }

    /// The fully qualified CDI name of `gpu` (`nvidia.com/gpu=<uuid>` or
    /// `nvidia.com/gpu=<index>`), `None` when no spec names it. Simulated
    /// GPUs never match: a CDI spec describes real hardware.
    pub fn name_for(&self, gpu: &GpuInfo) -> Option<String> {
        if gpu.simulated {
            return None;
        }
        [gpu.id.clone(), gpu.index.to_string()]
            .into_iter()
            .find(|n| self.names.contains(n))
            .map(|n| format!("{CDI_KIND}={n}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Topology;

    #[test]
    fn names_come_from_nvidia_specs_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("nvidia.yaml"),
            "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"0\"\n  containerEdits: {}\n- name: GPU-abc\n  containerEdits: {}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("other.json"),
            r#"{"cdiVersion":"0.5.0","kind":"vendor.com/fpga","devices":[{"name":"1"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        let index = CdiIndex::load(&[dir.path(), Path::new("/nonexistent/cdi")]);
        assert_eq!(index.specs().len(), 1);
        let mut gpus = Topology::Pcie4x.gpus(Path::new("/sim"));
        assert_eq!(
            index.name_for(&gpus[0]),
            None,
            "simulated GPUs never use CDI"
        );
        for g in &mut gpus {
            g.simulated = false;
        }
        assert_eq!(
            index.name_for(&gpus[0]).as_deref(),
            Some("nvidia.com/gpu=0")
        );
        assert_eq!(index.name_for(&gpus[1]), None);
        gpus[1].id = "GPU-abc".into();
        assert_eq!(
            index.name_for(&gpus[1]).as_deref(),
            Some("nvidia.com/gpu=GPU-abc")
        );
    }
}
