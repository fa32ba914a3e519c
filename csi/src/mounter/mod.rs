//! The seam between the driver and the kernel: every mount, loop-device and
//! filesystem operation goes through [`Mounter`], so the driver's logic runs
//! in unit tests against [`FakeMounter`] and for real against
//! [`SystemMounter`].

mod fake;
pub mod mountinfo;
mod system;

use std::path::{Path, PathBuf};

pub use fake::FakeMounter;
pub use system::SystemMounter;

use crate::Error;

/// Space and inode usage of a mounted filesystem, as `statvfs` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Size of the filesystem in bytes.
    pub total_bytes: u64,
    /// Bytes available to unprivileged writers.
    pub available_bytes: u64,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Inodes in total.
    pub total_inodes: u64,
    /// Inodes free.
    pub free_inodes: u64,
    /// Inodes in use.
    pub used_inodes: u64,
}

/// Mount, loop-device and filesystem operations the driver needs. All calls
/// block; the driver runs them on the blocking pool.
pub trait Mounter: Send + Sync + std::fmt::Debug {
    /// Checks that the tools the driver execs are installed; the error says
    /// which package to install.
    fn check(&self) -> Result<(), Error>;
    /// Makes a filesystem of `fs_type` (`ext4`) in the image file.
    fn mkfs(&self, image: &Path, fs_type: &str) -> Result<(), Error>;
    /// Attaches the image file to a free loop device and returns the device.
    fn loop_attach(&self, image: &Path) -> Result<PathBuf, Error>;
    /// The loop devices the image file is attached to now.
    fn loop_devices(&self, image: &Path) -> Result<Vec<PathBuf>, Error>;
    /// Detaches a loop device.
    fn loop_detach(&self, device: &Path) -> Result<(), Error>;
    /// Makes a loop device pick up its grown backing file's new size.
    fn loop_refresh(&self, device: &Path) -> Result<(), Error>;
    /// Grows the (mounted) ext4 filesystem on `device` to the device's size.
    fn resize_fs(&self, device: &Path) -> Result<(), Error>;
    /// Whether [`Mounter::resize_fs`] can work: the kernel's online resize
    /// needs CAP_SYS_RESOURCE.
    fn can_resize_online(&self) -> bool;
    /// Checks and grows the unmounted filesystem in the image file to the
    /// file's size.
    fn grow_offline(&self, image: &Path) -> Result<(), Error>;
    /// Mounts the filesystem on `device` at `target`.
    fn mount(&self, device: &Path, target: &Path, fs_type: &str) -> Result<(), Error>;
    /// Bind-mounts `source` at `target`, read-only when asked.
    fn bind(&self, source: &Path, target: &Path, readonly: bool) -> Result<(), Error>;
    /// Unmounts `target`; succeeds when nothing is mounted there.
    fn unmount(&self, target: &Path) -> Result<(), Error>;
    /// Whether something is mounted at exactly `target`.
    fn is_mounted(&self, target: &Path) -> Result<bool, Error>;
    /// Usage of the filesystem that holds `path`.
    fn usage(&self, path: &Path) -> Result<Usage, Error>;
}
