//! Creating character device nodes, behind a narrow trait so that unit tests
//! of the simulated backend need no root.
//!
//! Simulated GPUs get NVIDIA's real numbering: major 195, minor N for
//! `nvidiaN`, minor 255 for `nvidiactl`. On a machine without the NVIDIA
//! driver no driver claims major 195, so opening such a node fails with
//! ENXIO, while the device cgroup still decides whether the open may be
//! attempted at all (EPERM when denied): isolation is tested for real.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sys::stat::{Mode, SFlag, makedev, mknod};

/// Character major number of NVIDIA GPU device nodes.
pub const NVIDIA_MAJOR: u32 = 195;
/// Minor number of `/dev/nvidiactl`.
pub const NVIDIACTL_MINOR: u32 = 255;

/// Creates character device nodes.
pub trait DeviceNodeMaker: Send + Sync {
    /// Makes `path` a character device `major:minor` (mode 0666), replacing
    /// whatever is there unless it already is that device.
    fn ensure_char_device(&self, path: &Path, major: u32, minor: u32) -> std::io::Result<()>;
}

/// The real implementation: `mknod(2)`; needs root (CAP_MKNOD).
#[derive(Debug, Default, Clone, Copy)]
pub struct Mknod;

impl DeviceNodeMaker for Mknod {
    fn ensure_char_device(&self, path: &Path, major: u32, minor: u32) -> std::io::Result<()> {
        let dev = makedev(u64::from(major), u64::from(minor));
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.file_type().is_char_device() && meta.rdev() == dev {
                return Ok(());
            }
            std::fs::remove_file(path)?;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), dev)?;
        // mknod honours the umask; the node must be usable by any container user.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
    }
}

/// A fake that records the nodes it was asked for.
#[derive(Debug, Default)]
pub struct RecordingNodeMaker {
    made: Mutex<Vec<(PathBuf, u32, u32)>>,
}

impl RecordingNodeMaker {
    /// The nodes asked for so far: (path, major, minor).
    pub fn made(&self) -> Vec<(PathBuf, u32, u32)> {
        self.made.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl DeviceNodeMaker for RecordingNodeMaker {
    fn ensure_char_device(&self, path: &Path, major: u32, minor: u32) -> std::io::Result<()> {
        self.made.lock().unwrap_or_else(|e| e.into_inner()).push((
            path.to_path_buf(),
            major,
            minor,
        ));
        Ok(())
    }
}
