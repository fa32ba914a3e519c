//! Mounts as a seam: overlay root filesystems, tmpfs volumes and (private) bind mounts
//! go through [`Mounter`], with [`SystemMounter`] calling mount(2) via `nix`.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// A mount(2) or umount(2) that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct MountError {
    /// What was attempted (`mount overlay`, `umount`).
    pub op: &'static str,
    /// The mount point.
    pub path: PathBuf,
    /// The errno.
    #[source]
    pub source: nix::Error,
}

/// Mount operations the agent performs.
pub trait Mounter: Send + Sync {
    /// Mounts an overlay at `target`; `lower` is ordered top layer first.
    fn overlay(
        &self,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<(), MountError>;
    /// Mounts a tmpfs at `target`, limited to `size_bytes` when given.
    fn tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> Result<(), MountError>;
    /// Bind-mounts `source` (which may be a `/proc/<pid>/fd/<n>` link) at `target` and
    /// makes it private, so that nothing propagates to or from other mount namespaces.
    fn bind_private(&self, source: &Path, target: &Path) -> Result<(), MountError>;
    /// Lazily unmounts `target`; a path that is not a mount point is fine.
    fn unmount(&self, target: &Path) -> Result<(), MountError>;
    /// Whether `target` is a mount point.
    fn is_mounted(&self, target: &Path) -> bool;
}

/// The real mount(2).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemMounter;

impl Mounter for SystemMounter {
    fn overlay(
        &self,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<(), MountError> {
        let lower: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        );
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|source| MountError {
            op: "mount overlay",
            path: target.to_path_buf(),
            source,
        })
    }

    fn tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> Result<(), MountError> {
        let data = size_bytes.map(|s| format!("size={s}")).unwrap_or_default();
        mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(data.as_str()),
        )
        .map_err(|source| MountError {
            op: "mount tmpfs",
            path: target.to_path_buf(),
            source,
        })
    }

    fn bind_private(&self, source: &Path, target: &Path) -> Result<(), MountError> {
        let failed = |op| {
            move |source| MountError {
                op,
                path: target.to_path_buf(),
                source,
            }
        };
        mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(failed("bind mount"))?;
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(failed("make private"))
    }

    fn unmount(&self, target: &Path) -> Result<(), MountError> {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
            Err(source) => Err(MountError {
                op: "umount",
                path: target.to_path_buf(),
                source,
            }),
        }
    }

    fn is_mounted(&self, target: &Path) -> bool {
        is_mount_point(target)
    }
}

/// Whether `path` appears as a mount point in `/proc/self/mountinfo`.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.display().to_string();
    info.lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

/// Every mount point at or below `dir`, deepest first (for cleanup).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// A mounter that records what it was asked and mounts nothing (unit tests, hollow nodes).
#[derive(Debug, Default)]
pub struct FakeMounter {
    mounted: std::sync::Mutex<Vec<(PathBuf, Option<u64>)>>,
}

impl FakeMounter {
    /// Current "mounts" as (target, tmpfs size).
    pub fn mounted(&self) -> Vec<(PathBuf, Option<u64>)> {
        self.mounted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn add(&self, target: &Path, size: Option<u64>) {
        self.mounted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((target.to_path_buf(), size));
    }
}

impl Mounter for FakeMounter {
    fn overlay(
        &self,
        _lower: &[PathBuf],
        _upper: &Path,
        _work: &Path,
        target: &Path,
    ) -> Result<(), MountError> {
        self.add(target, None);
        Ok(())
    }

    fn tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> Result<(), MountError> {
        self.add(target, size_bytes);
        Ok(())
    }

    fn bind_private(&self, _source: &Path, target: &Path) -> Result<(), MountError> {
        self.add(target, None);
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), MountError> {
        self.mounted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(p, _)| p != target);
        Ok(())
    }

    fn is_mounted(&self, target: &Path) -> bool {
        self.mounted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(p, _)| p == target)
    }
}
