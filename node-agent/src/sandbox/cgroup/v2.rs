//! cgroup v2: one unified hierarchy. Controllers are enabled down the path through
//! `cgroup.subtree_control`; CPU shares become `cpu.weight` with kubelet's formula.

use std::path::{Path, PathBuf};

use super::{
    CgroupDriver, CgroupError, CgroupVersion, Usage, keyed, read_file, remove_tree, subdirs,
    write_file,
};
use crate::sandbox::qos::{CPU_PERIOD_US, PodLimits};

/// Controllers the pod cgroups need.
const CONTROLLERS: &str = "+cpu +memory +pids";

/// The unified hierarchy mounted at `base` (normally `/sys/fs/cgroup`).
#[derive(Debug, Clone)]
pub struct CgroupV2 {
    base: PathBuf,
}

/// cgroup v2 `cpu.weight` for v1 `shares` (kubelet's `CpuSharesToCpuWeight`).
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + ((shares.saturating_sub(2)) * 9999) / 262_142
}

impl CgroupV2 {
    /// A driver for the hierarchy mounted at `base`.
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }

    fn dir(&self, rel: &str) -> PathBuf {
        self.base.join(rel.trim_start_matches('/'))
    }

    /// The mount point of the hierarchy.
    pub fn base(&self) -> &Path {
        &self.base
    }
}

impl CgroupDriver for CgroupV2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn create_pod(&self, rel: &str, limits: &PodLimits) -> Result<(), CgroupError> {
        let dir = self.dir(rel);
        std::fs::create_dir_all(&dir).map_err(super::io_err(&dir))?;
        // Enable the controllers in every ancestor so the pod cgroup has their files.
        let mut parent = self.base.clone();
        for part in rel.trim_start_matches('/').split('/') {
            let control = parent.join("cgroup.subtree_control");
            let current = std::fs::read_to_string(&control).unwrap_or_default();
            if !["cpu", "memory", "pids"]
                .iter()
                .all(|c| current.split_whitespace().any(|w| w == *c))
            {
                write_file(&control, CONTROLLERS)?;
            }
            parent = parent.join(part);
        }
        write_file(
            &dir.join("cpu.weight"),
            &shares_to_weight(limits.cpu_shares).to_string(),
        )?;
        let quota = limits
            .cpu_quota_us
            .map(|q| q.to_string())
            .unwrap_or_else(|| "max".into());
        write_file(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
        let mem = limits
            .memory_bytes
            .map(|b| b.to_string())
            .unwrap_or_else(|| "max".into());
        write_file(&dir.join("memory.max"), &mem)?;
        write_file(&dir.join("pids.max"), &limits.pids.to_string())
    }

    fn remove(&self, rel: &str) -> Result<(), CgroupError> {
        remove_tree(&self.dir(rel))
    }

    fn exists(&self, rel: &str) -> bool {
        self.dir(rel).exists()
    }

    fn read(&self, rel: &str, _controller: &str, file: &str) -> Result<String, CgroupError> {
        read_file(&self.dir(rel).join(file))
    }

    fn oom_kills(&self, rel: &str) -> Result<u64, CgroupError> {
        Ok(keyed(&self.read(rel, "memory", "memory.events")?, "oom_kill").unwrap_or(0))
    }

    fn usage(&self, rel: &str) -> Result<Usage, CgroupError> {
        let stat = self.read(rel, "cpu", "cpu.stat")?;
        let mem = self.read(rel, "memory", "memory.current")?;
        Ok(Usage {
            cpu_nanos: keyed(&stat, "usage_usec").unwrap_or(0) * 1000,
            memory_bytes: mem.trim().parse().unwrap_or(0),
        })
    }

    fn children(&self, rel: &str) -> Result<Vec<String>, CgroupError> {
        subdirs(&self.dir(rel))
    }
}
