//! [`LocalImageStore`]: image references recorded as small JSON files under
//! `<images>/refs/`, layers under `<images>/layers/<sha256>/`, and one overlay
//! mount per container.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{HOST_IMAGE, Image, ImageConfig, ImageError, ImageStore};
use crate::mounts::Mounter;

/// Images kept on the local disk.
pub struct LocalImageStore {
    dir: PathBuf,
    mounter: Arc<dyn Mounter>,
}

/// A file name for an image reference (`/` and `:` are escaped).
fn ref_file(name: &str) -> String {
    let escaped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '+'
            }
        })
        .collect();
    format!("{escaped}.json")
}

impl LocalImageStore {
    /// A store under `dir`, mounting with `mounter`.
    pub fn new(dir: impl Into<PathBuf>, mounter: Arc<dyn Mounter>) -> Self {
        Self {
            dir: dir.into(),
            mounter,
        }
    }

    /// The directory holding unpacked layers.
    pub fn layers_dir(&self) -> PathBuf {
        self.dir.join("layers")
    }

    /// Records `image` under its name (overwriting an older record).
    pub fn record(&self, image: &Image) -> Result<(), ImageError> {
        let refs = self.dir.join("refs");
        std::fs::create_dir_all(&refs).map_err(|e| ImageError::io(&refs, e))?;
        let path = refs.join(ref_file(&image.name));
        let body = serde_json::to_vec_pretty(image).map_err(|e| ImageError::Invalid {
            image: image.name.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&path, body).map_err(|e| ImageError::io(&path, e))
    }

    /// Registers a root filesystem directory (used in place, not copied) as `name`.
    pub fn import_rootfs_dir(
        &self,
        name: &str,
        rootfs: &Path,
        config: ImageConfig,
    ) -> Result<Image, ImageError> {
        if !rootfs.is_dir() {
            return Err(ImageError::io(
                rootfs,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let image = Image {
            name: name.to_string(),
            layers: vec![rootfs.to_path_buf()],
            config,
        };
        self.record(&image)?;
        Ok(image)
    }

    /// Imports an OCI image layout directory as `name`.
    pub fn import_oci_layout(&self, name: &str, layout: &Path) -> Result<Image, ImageError> {
        let image = super::oci_layout::import(layout, &self.layers_dir(), name)?;
        self.record(&image)?;
        Ok(image)
    }

    /// Imports an OCI image layout packed as a tar archive (`docker save`-style
    /// `oci-archive`) as `name`.
    pub fn import_archive(&self, name: &str, archive: &Path) -> Result<Image, ImageError> {
        let tmp = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
        let unpacked = tempfile::Builder::new()
            .prefix("import-")
            .tempdir_in(&tmp)
            .map_err(|e| ImageError::io(&tmp, e))?;
        let file = std::fs::File::open(archive).map_err(|e| ImageError::io(archive, e))?;
        tar::Archive::new(file)
            .unpack(unpacked.path())
            .map_err(|e| ImageError::io(archive, e))?;
        self.import_oci_layout(name, unpacked.path())
    }
}

impl ImageStore for LocalImageStore {
    fn resolve(&self, image: &str) -> Result<Image, ImageError> {
        if image == HOST_IMAGE {
            return Ok(Image {
                name: HOST_IMAGE.into(),
                layers: vec![PathBuf::from("/")],
                config: ImageConfig::default(),
            });
        }
        let path = self.dir.join("refs").join(ref_file(image));
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::NotFound {
                    image: image.to_string(),
                });
            }
            Err(e) => return Err(ImageError::io(&path, e)),
        };
        serde_json::from_slice(&body).map_err(|e| ImageError::Invalid {
            image: image.to_string(),
            message: format!("{}: {e}", path.display()),
        })
    }

    fn mount_rootfs(&self, image: &Image, dir: &Path) -> Result<PathBuf, ImageError> {
        let rootfs = dir.join("rootfs");
        if self.mounter.is_mounted(&rootfs) {
            return Ok(rootfs);
        }
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        for d in [&rootfs, &upper, &work] {
            std::fs::create_dir_all(d).map_err(|e| ImageError::io(d, e))?;
        }
        let lower: Vec<PathBuf> = image.layers.iter().rev().cloned().collect();
        self.mounter.overlay(&lower, &upper, &work, &rootfs)?;
        Ok(rootfs)
    }

    fn unmount_rootfs(&self, dir: &Path) -> Result<(), ImageError> {
        let rootfs = dir.join("rootfs");
        if self.mounter.is_mounted(&rootfs) {
            self.mounter.unmount(&rootfs)?;
        }
        Ok(())
    }
}
