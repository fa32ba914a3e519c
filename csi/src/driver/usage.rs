//! What the driver holds, for `/metrics`: volumes and their provisioned
//! bytes by backing, staged and published counts, and the bytes left to
//! provision (GetCapacity's answer).

use super::Driver;
use super::state::Backing;
use crate::Error;

/// Volumes and bytes of one backing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackingUsage {
    /// Volumes.
    pub volumes: u64,
    /// Sum of their provisioned capacity, bytes.
    pub provisioned_bytes: u64,
}

/// A snapshot of the driver's volumes and capacity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverUsage {
    /// Loop-mounted image volumes.
    pub image: BackingUsage,
    /// Directory volumes.
    pub directory: BackingUsage,
    /// Volumes with a staging path.
    pub staged: u64,
    /// Volumes published at one target path or more.
    pub published: u64,
    /// Bytes that can still be provisioned (what GetCapacity reports).
    pub available_bytes: u64,
    /// `--capacity` when given, else `None` (the filesystem's free space decides).
    pub capacity_limit_bytes: Option<u64>,
}

impl Driver {
    /// Counts the volumes and the capacity left, under the driver's lock:
    /// blocks while a volume operation runs (call from a blocking thread).
    pub fn usage(&self) -> Result<DriverUsage, Error> {
        let volumes = self.lock();
        let mut usage = DriverUsage {
            available_bytes: self.available_bytes(&volumes)?,
            capacity_limit_bytes: self.config.capacity_bytes,
            ..DriverUsage::default()
        };
        for v in volumes.values() {
            let backing = match v.backing {
                Backing::Image => &mut usage.image,
                Backing::Directory => &mut usage.directory,
            };
            backing.volumes += 1;
            backing.provisioned_bytes += v.capacity_bytes;
            usage.staged += u64::from(v.staged.is_some());
            usage.published += u64::from(!v.published.is_empty());
        }
        Ok(usage)
    }
}
