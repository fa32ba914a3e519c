//! cgroup v1: one hierarchy per controller under `/sys/fs/cgroup/<controller>`.
//! Limits go to `cpu` (shares, CFS quota), `memory` and `pids`; the OCI runtime
//! creates the container cgroups in every other hierarchy itself, so removal walks
//! all of them (including the hybrid `unified` mount).

use std::path::{Path, PathBuf};

use super::{
    CgroupDriver, CgroupError, CgroupVersion, Usage, keyed, read_file, remove_tree, subdirs,
    write_file,
};
use crate::sandbox::qos::{CPU_PERIOD_US, PodLimits};

/// Controllers in which the agent creates pod cgroups itself.
const CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];

/// The legacy hierarchy mounted at `base` (normally `/sys/fs/cgroup`).
#[derive(Debug, Clone)]
pub struct CgroupV1 {
    base: PathBuf,
}

impl CgroupV1 {
    /// A driver for hierarchies mounted below `base`.
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }

    fn dir(&self, controller: &str, rel: &str) -> PathBuf {
        self.base.join(controller).join(rel.trim_start_matches('/'))
    }

    /// Every mounted hierarchy below `base` (directories holding `cgroup.procs`).
    fn hierarchies(&self) -> Vec<PathBuf> {
        subdirs(&self.base)
            .unwrap_or_default()
            .into_iter()
            .map(|name| self.base.join(name))
            .filter(|p| p.join("cgroup.procs").exists())
            .collect()
    }
}

impl CgroupDriver for CgroupV1 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn create_pod(&self, rel: &str, limits: &PodLimits) -> Result<(), CgroupError> {
        for controller in CONTROLLERS {
            let dir = self.dir(controller, rel);
            if !self.base.join(controller).exists() {
                continue;
            }
            std::fs::create_dir_all(&dir).map_err(super::io_err(&dir))?;
        }
        let cpu = self.dir("cpu", rel);
        write_file(&cpu.join("cpu.shares"), &limits.cpu_shares.to_string())?;
        write_file(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
        let quota = limits
            .cpu_quota_us
            .map(|q| q.to_string())
            .unwrap_or_else(|| "-1".into());
        write_file(&cpu.join("cpu.cfs_quota_us"), &quota)?;
        let mem = self.dir("memory", rel);
        let limit = limits
            .memory_bytes
            .map(|b| b.to_string())
            .unwrap_or_else(|| "-1".into());
        write_file(&mem.join("memory.limit_in_bytes"), &limit)?;
        write_file(
            &self.dir("pids", rel).join("pids.max"),
            &limits.pids.to_string(),
        )
    }

    fn remove(&self, rel: &str) -> Result<(), CgroupError> {
        for hierarchy in self.hierarchies() {
            remove_tree(&hierarchy.join(rel.trim_start_matches('/')))?;
        }
        Ok(())
    }

    fn exists(&self, rel: &str) -> bool {
        self.hierarchies()
            .iter()
            .any(|h| h.join(rel.trim_start_matches('/')).exists())
    }

    fn read(&self, rel: &str, controller: &str, file: &str) -> Result<String, CgroupError> {
        read_file(&self.dir(controller, rel).join(file))
    }

    fn oom_kills(&self, rel: &str) -> Result<u64, CgroupError> {
        let text = self.read(rel, "memory", "memory.oom_control")?;
        Ok(keyed(&text, "oom_kill").unwrap_or(0))
    }

    fn usage(&self, rel: &str) -> Result<Usage, CgroupError> {
        let cpu = self.read(rel, "cpuacct", "cpuacct.usage")?;
        let mem = self.read(rel, "memory", "memory.usage_in_bytes")?;
        Ok(Usage {
            cpu_nanos: cpu.trim().parse().unwrap_or(0),
            memory_bytes: mem.trim().parse().unwrap_or(0),
        })
    }

    fn children(&self, rel: &str) -> Result<Vec<String>, CgroupError> {
        let mut all: Vec<String> = Vec::new();
        for hierarchy in self.hierarchies() {
            all.extend(subdirs(&hierarchy.join(rel.trim_start_matches('/')))?);
        }
        all.sort();
        all.dedup();
        Ok(all)
    }
}

/// On a hybrid host, binds every controller still attached to the unified hierarchy
/// (`<base>/unified`) to a v1 hierarchy of its own at `<base>/<controller>`: crun refuses
/// hybrid mode while the unified hierarchy has controllers. Idempotent; returns the
/// controllers it moved. The agent calls it at start-up on v1 hosts.
pub fn release_unified_controllers(base: &Path) -> Result<Vec<String>, CgroupError> {
    use nix::mount::{MsFlags, mount};
    let controllers_file = base.join("unified/cgroup.controllers");
    let Ok(text) = std::fs::read_to_string(&controllers_file) else {
        return Ok(Vec::new());
    };
    let mut moved = Vec::new();
    for controller in text.split_whitespace() {
        let dir = base.join(controller);
        std::fs::create_dir_all(&dir).map_err(super::io_err(&dir))?;
        mount(
            Some("cgroup"),
            &dir,
            Some("cgroup"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(controller),
        )
        .map_err(|e| CgroupError {
            path: dir.clone(),
            source: std::io::Error::from(e),
        })?;
        moved.push(controller.to_string());
    }
    Ok(moved)
}

impl CgroupV1 {
    /// The mount point of the hierarchies (for tests and diagnostics).
    pub fn base(&self) -> &Path {
        &self.base
    }
}
