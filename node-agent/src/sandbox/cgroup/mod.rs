//! Pod cgroups behind one [`CgroupDriver`] trait, written directly to cgroupfs:
//! [`v1::CgroupV1`] for the legacy/hybrid hierarchy (one mount per controller) and
//! [`v2::CgroupV2`] for the unified hierarchy.
//!
//! Layout (as kubelet's cgroupfs driver): `/<root>/pod<uid>` for Guaranteed pods,
//! `/<root>/burstable/pod<uid>` and `/<root>/besteffort/pod<uid>` for the others;
//! each container gets `<pod cgroup>/<container id>`, created by the OCI runtime from
//! the spec's `cgroupsPath`.

#[cfg(test)]
mod tests;
pub mod v1;
pub mod v2;

use std::path::{Path, PathBuf};

use super::qos::{PodLimits, QosClass};

/// A cgroup filesystem operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("cgroup {path}: {source}")]
pub struct CgroupError {
    /// The cgroup file or directory.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// Which cgroup hierarchy a driver writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy hierarchy (one mount per controller; "hybrid" counts as v1).
    V1,
    /// Unified hierarchy.
    V2,
}

/// Resource usage read back from a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used, in nanoseconds.
    pub cpu_nanos: u64,
    /// Memory in use, in bytes.
    pub memory_bytes: u64,
}

/// Creating, limiting, reading and removing pod cgroups.
pub trait CgroupDriver: Send + Sync {
    /// The hierarchy this driver writes.
    fn version(&self) -> CgroupVersion;
    /// Creates the cgroup at `rel` (and its parents) and writes `limits`; idempotent.
    fn create_pod(&self, rel: &str, limits: &PodLimits) -> Result<(), CgroupError>;
    /// Removes the cgroup at `rel` and everything below it; a missing one is fine.
    fn remove(&self, rel: &str) -> Result<(), CgroupError>;
    /// Whether the cgroup at `rel` exists.
    fn exists(&self, rel: &str) -> bool;
    /// Reads one file of the cgroup at `rel` (`controller` names the v1 hierarchy).
    fn read(&self, rel: &str, controller: &str, file: &str) -> Result<String, CgroupError>;
    /// How many processes the kernel OOM-killed in the cgroup at `rel`.
    fn oom_kills(&self, rel: &str) -> Result<u64, CgroupError>;
    /// CPU and memory usage of the cgroup at `rel`.
    fn usage(&self, rel: &str) -> Result<Usage, CgroupError>;
    /// The child cgroup names directly below `rel` (empty when it does not exist).
    fn children(&self, rel: &str) -> Result<Vec<String>, CgroupError>;
}

/// The pod cgroup path for `uid` of class `qos` under `root` (e.g. `/coxswain/burstable/pod<uid>`).
pub fn pod_cgroup_path(root: &str, qos: QosClass, uid: &str) -> String {
    match qos.cgroup_dir() {
        Some(dir) => format!("/{root}/{dir}/pod{uid}"),
        None => format!("/{root}/pod{uid}"),
    }
}

/// Every pod cgroup under `root` as `(uid, path)`, found by listing the QoS levels.
pub fn list_pod_cgroups(
    driver: &dyn CgroupDriver,
    root: &str,
) -> Result<Vec<(String, String)>, CgroupError> {
    let mut found = Vec::new();
    for level in [
        format!("/{root}"),
        format!("/{root}/burstable"),
        format!("/{root}/besteffort"),
    ] {
        for child in driver.children(&level)? {
            if let Some(uid) = child.strip_prefix("pod") {
                found.push((uid.to_string(), format!("{level}/{child}")));
            }
        }
    }
    Ok(found)
}

/// The driver for this machine: v2 when `/sys/fs/cgroup` is a unified mount, else v1.
pub fn detect() -> Box<dyn CgroupDriver> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        Box::new(v2::CgroupV2::new(base))
    } else {
        Box::new(v1::CgroupV1::new(base))
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io_err(path))
}

pub(crate) fn read_file(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

/// The value of `key` in a flat-keyed file such as `memory.events` or `cpu.stat`.
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Names of the subdirectories of `dir` (empty when `dir` is missing).
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<String>, CgroupError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(CgroupError {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Removes the cgroup directory `dir` and its descendants, leaves first.
/// Directories of a real cgroupfs only hold virtual files, so `rmdir` suffices there;
/// on a fixture (plain tempdir) the files are removed first.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    for child in subdirs(dir)? {
        remove_tree(&dir.join(child))?;
    }
    let mut attempts = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                return std::fs::remove_dir_all(dir).map_err(io_err(dir));
            }
            Err(e)
                if e.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32)
                    && attempts < 20
                    && is_cgroupfs(dir) =>
            {
                // Processes are left in it (a container init whose runtime state is
                // gone, e.g. after the agent was killed inside `runc create`): the pod is
                // being removed, so they are killed, as kubelet does before it destroys a
                // pod cgroup.
                kill_members(dir);
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(source) => {
                return Err(CgroupError {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// Whether `dir` is on a cgroup filesystem (v1 or v2), not a test fixture.
fn is_cgroupfs(dir: &Path) -> bool {
    use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, statfs};
    statfs(dir).is_ok_and(|s| {
        s.filesystem_type() == CGROUP_SUPER_MAGIC || s.filesystem_type() == CGROUP2_SUPER_MAGIC
    })
}

/// SIGKILLs every process in the cgroup at `dir` (its own `cgroup.procs`).
fn kill_members(dir: &Path) {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        tracing::warn!(cgroup = %dir.display(), pid, "killing a process left in a pod cgroup being removed");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
