//! Staging and publishing on this node: NodeStageVolume attaches the image
//! to a loop device and mounts it once per node; NodePublishVolume
//! bind-mounts the staging path into each pod's target path, read-only for
//! readers; unpublish and unstage undo it, detaching every loop device of
//! the image so that none leaks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Driver;
use super::state::{Backing, VolumeRecord};
use crate::Error;
use crate::mounter::Usage;

/// How long unstage waits for the kernel to let go of a detached loop device.
const DETACH_TIMEOUT: Duration = Duration::from_secs(10);

fn required_path(value: &str, field: &str) -> Result<PathBuf, Error> {
    if value.is_empty() {
        return Err(Error::missing(field));
    }
    Ok(PathBuf::from(value))
}

fn required_id(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::missing("volume_id"));
    }
    Ok(())
}

impl Driver {
    fn save_into(&self, slot: &mut VolumeRecord, updated: VolumeRecord) -> Result<(), Error> {
        self.dir.save(&updated)?;
        *slot = updated;
        Ok(())
    }

    /// Mounts the volume's filesystem at `staging` unless it already is.
    fn mount_staging(&self, record: &VolumeRecord, staging: &Path) -> Result<(), Error> {
        if self.mounter.is_mounted(staging)? {
            return Ok(());
        }
        std::fs::create_dir_all(staging).map_err(|e| Error::io(staging, e))?;
        match record.backing {
            Backing::Directory => self
                .mounter
                .bind(&self.dir.dir_path(&record.id), staging, false),
            Backing::Image => {
                let image = self.dir.image_path(&record.id);
                let device = match self.mounter.loop_devices(&image)?.into_iter().next() {
                    Some(device) => device,
                    None => self.mounter.loop_attach(&image)?,
                };
                self.mounter.mount(&device, staging, &record.fs_type)
            }
        }
    }

    /// Unmounts `staging` and detaches every loop device of the image.
    fn release_staging(&self, record: &VolumeRecord, staging: &Path) -> Result<(), Error> {
        self.mounter.unmount(staging)?;
        if record.backing != Backing::Image {
            return Ok(());
        }
        let image = self.dir.image_path(&record.id);
        for device in self.mounter.loop_devices(&image)? {
            self.mounter.loop_detach(&device)?;
        }
        // The kernel detaches a loop device still held open (udev probing
        // it, an unmount finishing) only at the last close: wait for that,
        // so that an unstage that succeeded leaves no loop device behind.
        let deadline = Instant::now() + DETACH_TIMEOUT;
        loop {
            let left = self.mounter.loop_devices(&image)?;
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::FailedPrecondition(format!(
                    "volume {}: loop device {} is still attached {DETACH_TIMEOUT:?} after detaching it \
                     (held open by another process?)",
                    record.id,
                    left[0].display()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Grows the filesystem to the image's size (after an expansion).
    fn grow_filesystem(&self, record: &VolumeRecord) -> Result<(), Error> {
        let image = self.dir.image_path(&record.id);
        let Some(device) = self.mounter.loop_devices(&image)?.into_iter().next() else {
            return Err(Error::FailedPrecondition(format!(
                "volume {} is not staged: NodeStageVolume first",
                record.id
            )));
        };
        self.mounter.loop_refresh(&device)?;
        self.mounter.resize_fs(&device)
    }

    /// NodeStageVolume.
    pub(super) fn stage(&self, id: &str, staging: &str) -> Result<(), Error> {
        required_id(id)?;
        let staging = required_path(staging, "staging_target_path")?;
        let mut volumes = self.lock();
        let slot = volumes
            .get_mut(id)
            .ok_or_else(|| Error::VolumeNotFound(id.into()))?;
        let mut record = slot.clone();
        match &record.staged {
            Some(path) if *path != staging => {
                return Err(Error::AlreadyExists(format!(
                    "volume {id} is staged at {}, not {}",
                    path.display(),
                    staging.display()
                )));
            }
            Some(_) => {}
            None => {
                // Recorded before mounting: a driver killed mid-stage still
                // knows where to clean up.
                record.staged = Some(staging.clone());
                self.save_into(slot, record.clone())?;
            }
        }
        // The image grew while staged and was unstaged before the node
        // grew its filesystem: finish that offline, before mounting.
        if record.needs_resize && !self.mounter.is_mounted(&staging)? {
            self.mounter
                .grow_offline(&self.dir.image_path(&record.id))?;
            record.needs_resize = false;
            self.save_into(slot, record.clone())?;
        }
        if let Err(e) = self.mount_staging(&record, &staging) {
            let _ = self.release_staging(&record, &staging);
            record.staged = None;
            self.save_into(slot, record)?;
            return Err(e);
        }
        Ok(())
    }

    /// NodeUnstageVolume.
    pub(super) fn unstage(&self, id: &str, staging: &str) -> Result<(), Error> {
        required_id(id)?;
        let staging = required_path(staging, "staging_target_path")?;
        let mut volumes = self.lock();
        let slot = volumes
            .get_mut(id)
            .ok_or_else(|| Error::VolumeNotFound(id.into()))?;
        let mut record = slot.clone();
        match &record.staged {
            None => return Ok(()),
            Some(path) if *path != staging => {
                return Err(Error::PathNotFound {
                    volume: id.into(),
                    path: staging,
                });
            }
            Some(_) => {}
        }
        let mut still = Vec::new();
        for target in record.published.keys() {
            if self.mounter.is_mounted(target)? {
                still.push(target.display().to_string());
            }
        }
        if !still.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is still published at {}: NodeUnpublishVolume first",
                still.join(", ")
            )));
        }
        self.release_staging(&record, &staging)?;
        record.staged = None;
        record.published.clear();
        self.save_into(slot, record)
    }

    /// NodePublishVolume.
    pub(super) fn publish(
        &self,
        id: &str,
        staging: &str,
        target: &str,
        readonly: bool,
    ) -> Result<(), Error> {
        required_id(id)?;
        let staging = required_path(staging, "staging_target_path")?;
        let target = required_path(target, "target_path")?;
        let mut volumes = self.lock();
        let slot = volumes
            .get_mut(id)
            .ok_or_else(|| Error::VolumeNotFound(id.into()))?;
        let mut record = slot.clone();
        if record.staged.as_ref() != Some(&staging) || !self.mounter.is_mounted(&staging)? {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is not staged at {}: NodeStageVolume first",
                staging.display()
            )));
        }
        match record.published.get(&target) {
            Some(ro) if *ro != readonly => {
                return Err(Error::AlreadyExists(format!(
                    "volume {id} is published at {} with readonly={ro}",
                    target.display()
                )));
            }
            Some(_) if self.mounter.is_mounted(&target)? => return Ok(()),
            Some(_) => {}
            None => {
                record.published.insert(target.clone(), readonly);
                self.save_into(slot, record.clone())?;
            }
        }
        let bound = std::fs::create_dir_all(&target)
            .map_err(|e| Error::io(&target, e))
            .and_then(|()| self.mounter.bind(&staging, &target, readonly));
        if let Err(e) = bound {
            record.published.remove(&target);
            self.save_into(slot, record)?;
            return Err(e);
        }
        Ok(())
    }

    /// NodeUnpublishVolume.
    pub(super) fn unpublish(&self, id: &str, target: &str) -> Result<(), Error> {
        required_id(id)?;
        let target = required_path(target, "target_path")?;
        let mut volumes = self.lock();
        let slot = volumes
            .get_mut(id)
            .ok_or_else(|| Error::VolumeNotFound(id.into()))?;
        if !slot.published.contains_key(&target) {
            return Ok(());
        }
        self.mounter.unmount(&target)?;
        // The CO made the target directory; leave it only if it is not empty.
        let _ = std::fs::remove_dir(&target);
        let mut record = slot.clone();
        record.published.remove(&target);
        self.save_into(slot, record)
    }

    /// The record of `id` and a check that `path` is its staging or target path.
    fn volume_at(&self, id: &str, path: &str, field: &str) -> Result<VolumeRecord, Error> {
        required_id(id)?;
        let path = required_path(path, field)?;
        let volumes = self.lock();
        let record = volumes
            .get(id)
            .ok_or_else(|| Error::VolumeNotFound(id.into()))?;
        if record.staged.as_ref() != Some(&path) && !record.published.contains_key(&path) {
            return Err(Error::PathNotFound {
                volume: id.into(),
                path,
            });
        }
        Ok(record.clone())
    }

    /// NodeGetVolumeStats.
    pub(super) fn stats(&self, id: &str, path: &str) -> Result<Usage, Error> {
        self.volume_at(id, path, "volume_path")?;
        self.mounter.usage(Path::new(path))
    }

    /// NodeExpandVolume: grows the filesystem online; returns the capacity.
    pub(super) fn node_expand(&self, id: &str, path: &str, required: u64) -> Result<u64, Error> {
        let record = self.volume_at(id, path, "volume_path")?;
        if required > record.capacity_bytes {
            return Err(Error::OutOfRange(format!(
                "volume {id} has {} bytes; ControllerExpandVolume to {required} first",
                record.capacity_bytes
            )));
        }
        if record.backing == Backing::Directory || !record.needs_resize {
            return Ok(record.capacity_bytes);
        }
        if !self.mounter.can_resize_online() {
            return Err(Error::FailedPrecondition(format!(
                "volume {id}: online expansion needs CAP_SYS_RESOURCE, which cox-csi lacks; \
                 unstage the volume and the next NodeStageVolume grows it offline"
            )));
        }
        let mut volumes = self.lock();
        let slot = volumes
            .get_mut(id)
            .ok_or_else(|| Error::VolumeNotFound(id.into()))?;
        self.grow_filesystem(slot)?;
        let mut updated = slot.clone();
        updated.needs_resize = false;
        self.save_into(slot, updated)?;
        Ok(record.capacity_bytes)
    }
}
