//! An in-memory [`Mounter`] for unit tests: records loop devices and mounts
//! instead of making them, and reports usage from the image files' sizes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Mounter, Usage};
use crate::Error;

/// A mount the fake pretends to have made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMount {
    /// The device or bind source.
    pub source: PathBuf,
    /// Whether it is read-only.
    pub readonly: bool,
}

#[derive(Debug, Default)]
struct FakeState {
    loops: BTreeMap<PathBuf, PathBuf>,
    mounts: BTreeMap<PathBuf, FakeMount>,
    next_loop: u32,
}

/// A [`Mounter`] that changes nothing on the host.
#[derive(Debug, Default)]
pub struct FakeMounter {
    state: Mutex<FakeState>,
}

impl FakeMounter {
    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The mounts in place now, by mount point.
    pub fn mounts(&self) -> BTreeMap<PathBuf, FakeMount> {
        self.state().mounts.clone()
    }

    /// The loop devices attached now, device to image.
    pub fn loops(&self) -> BTreeMap<PathBuf, PathBuf> {
        self.state().loops.clone()
    }

    /// The image file behind whatever is mounted at `path`, following bind
    /// mounts back to the loop device.
    fn image_behind(state: &FakeState, path: &Path) -> Option<PathBuf> {
        let mut source = state.mounts.get(path)?.source.clone();
        for _ in 0..8 {
            if let Some(image) = state.loops.get(&source) {
                return Some(image.clone());
            }
            source = state.mounts.get(&source)?.source.clone();
        }
        None
    }
}

impl Mounter for FakeMounter {
    fn check(&self) -> Result<(), Error> {
        Ok(())
    }

    fn mkfs(&self, image: &Path, _fs_type: &str) -> Result<(), Error> {
        std::fs::metadata(image)
            .map(drop)
            .map_err(|e| Error::io(image, e))
    }

    fn loop_attach(&self, image: &Path) -> Result<PathBuf, Error> {
        let mut state = self.state();
        let device = PathBuf::from(format!("/dev/fakeloop{}", state.next_loop));
        state.next_loop += 1;
        state.loops.insert(device.clone(), image.to_path_buf());
        Ok(device)
    }

    fn loop_devices(&self, image: &Path) -> Result<Vec<PathBuf>, Error> {
        let state = self.state();
        Ok(state
            .loops
            .iter()
            .filter(|(_, i)| i.as_path() == image)
            .map(|(d, _)| d.clone())
            .collect())
    }

    fn loop_detach(&self, device: &Path) -> Result<(), Error> {
        self.state().loops.remove(device);
        Ok(())
    }

    fn loop_refresh(&self, _device: &Path) -> Result<(), Error> {
        Ok(())
    }

    fn resize_fs(&self, _device: &Path) -> Result<(), Error> {
        Ok(())
    }

    fn can_resize_online(&self) -> bool {
        true
    }

    fn grow_offline(&self, image: &Path) -> Result<(), Error> {
        std::fs::metadata(image)
            .map(drop)
            .map_err(|e| Error::io(image, e))
    }

    fn mount(&self, device: &Path, target: &Path, _fs_type: &str) -> Result<(), Error> {
        self.bind(device, target, false)
    }

    fn bind(&self, source: &Path, target: &Path, readonly: bool) -> Result<(), Error> {
        let mount = FakeMount {
            source: source.to_path_buf(),
            readonly,
        };
        self.state().mounts.insert(target.to_path_buf(), mount);
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), Error> {
        self.state().mounts.remove(target);
        Ok(())
    }

    fn is_mounted(&self, target: &Path) -> Result<bool, Error> {
        Ok(self.state().mounts.contains_key(target))
    }

    fn usage(&self, path: &Path) -> Result<Usage, Error> {
        let state = self.state();
        let total = match Self::image_behind(&state, path) {
            Some(image) => std::fs::metadata(&image)
                .map_err(|e| Error::io(&image, e))?
                .len(),
            None => 1 << 30,
        };
        Ok(Usage {
            total_bytes: total,
            available_bytes: total,
            used_bytes: 0,
            total_inodes: 1024,
            free_inodes: 1024,
            used_inodes: 0,
        })
    }
}
