//! [`LocalImageStore`]: image references recorded as small JSON files under
//! `<images>/refs/`, layers under `<images>/layers/<sha256>/`, and one overlay
//! mount per container.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::registry::{RegistryPuller, names_registry};
use super::temporaries;
use super::{HOST_IMAGE, Image, ImageConfig, ImageError, ImageStore};
use crate::mounts::Mounter;

/// What one import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The image as recorded.
    pub image: Image,
    /// How many of its layers were unpacked now (the others were already in the store).
    pub unpacked: usize,
}

/// Images kept on the local disk.
pub struct LocalImageStore {
    dir: PathBuf,
    mounter: Arc<dyn Mounter>,
    registry: Option<RegistryPuller>,
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
            registry: None,
        }
    }

    /// Pulls with `puller` the images that name a registry and are not in the store.
    pub fn with_registry(mut self, puller: RegistryPuller) -> Self {
        self.registry = Some(puller);
        self
    }

    /// Pulls `image` from its registry and records it (whether or not it is here).
    pub fn pull(&self, image: &str) -> Result<Imported, ImageError> {
        let puller = self.registry.clone().unwrap_or_default();
        let imported = puller.pull(image, &self.layers_dir(), &self.dir.join("tmp"))?;
        self.record(&imported.image)?;
        Ok(imported)
    }

    /// Removes what imports and pulls killed midway left behind (temporary records, unpacked
    /// archives, downloaded blobs, half-unpacked layers); returns how many. Temporaries of
    /// a running import or pull are kept.
    pub fn sweep_temporaries(&self) -> usize {
        let tmp = self.dir.join("tmp");
        temporaries::sweep(&self.dir.join("refs"), ".tmp-")
            + temporaries::sweep(&tmp, "import-")
            + temporaries::sweep(&tmp, "blob-")
            + temporaries::sweep(&self.layers_dir(), ".unpack-")
    }

    /// The directory holding unpacked layers.
    pub fn layers_dir(&self) -> PathBuf {
        self.dir.join("layers")
    }

    /// Records `image` under its name (overwriting an older record; atomically, so a
    /// running agent never reads half a record).
    pub fn record(&self, image: &Image) -> Result<(), ImageError> {
        let refs = self.dir.join("refs");
        std::fs::create_dir_all(&refs).map_err(|e| ImageError::io(&refs, e))?;
        let path = refs.join(ref_file(&image.name));
        let body = serde_json::to_vec_pretty(image).map_err(|e| ImageError::Invalid {
            image: image.name.clone(),
            message: e.to_string(),
        })?;
        let tmp = refs.join(format!(
            "{}{}",
            temporaries::prefix(".tmp-"),
            ref_file(&image.name)
        ));
        std::fs::write(&tmp, body).map_err(|e| ImageError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ImageError::io(&path, e))
    }

    /// Every recorded image, by name.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let refs = self.dir.join("refs");
        let entries = match std::fs::read_dir(&refs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ImageError::io(&refs, e)),
        };
        let mut images = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| ImageError::io(&refs, e))?.path();
            let is_record = path.extension().is_some_and(|e| e == "json")
                && !path
                    .file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with('.'));
            if !is_record {
                continue;
            }
            let body = std::fs::read(&path).map_err(|e| ImageError::io(&path, e))?;
            let image: Image = serde_json::from_slice(&body).map_err(|e| ImageError::Invalid {
                image: path.display().to_string(),
                message: e.to_string(),
            })?;
            images.push(image);
        }
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// Imports `path`, an OCI image layout directory or a tar archive of one, as `name`
    /// (default: the name the layout's index gives its first image).
    pub fn import(&self, name: Option<&str>, path: &Path) -> Result<Imported, ImageError> {
        let meta = std::fs::metadata(path).map_err(|e| ImageError::io(path, e))?;
        let imported = if meta.is_dir() {
            super::oci_layout::import(path, &self.layers_dir(), name)?
        } else {
            let unpacked = self.unpack_archive(path)?;
            super::oci_layout::import(unpacked.path(), &self.layers_dir(), name).map_err(|e| {
                match e {
                    ImageError::Invalid { message, .. } => ImageError::Invalid {
                        image: path.display().to_string(),
                        message,
                    },
                    other => other,
                }
            })?
        };
        self.record(&imported.image)?;
        Ok(imported)
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
            digest: String::new(),
        };
        self.record(&image)?;
        Ok(image)
    }

    /// Imports an OCI image layout directory as `name`.
    pub fn import_oci_layout(&self, name: &str, layout: &Path) -> Result<Image, ImageError> {
        let imported = super::oci_layout::import(layout, &self.layers_dir(), Some(name))?;
        self.record(&imported.image)?;
        Ok(imported.image)
    }

    /// Imports an OCI image layout packed as a tar archive (`docker save`-style
    /// `oci-archive`) as `name`.
    pub fn import_archive(&self, name: &str, archive: &Path) -> Result<Image, ImageError> {
        let unpacked = self.unpack_archive(archive)?;
        self.import_oci_layout(name, unpacked.path())
    }

    /// Unpacks a tar archive into a temporary directory under the store.
    fn unpack_archive(&self, archive: &Path) -> Result<tempfile::TempDir, ImageError> {
        let tmp = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
        let unpacked = tempfile::Builder::new()
            .prefix(&temporaries::prefix("import-"))
            .tempdir_in(&tmp)
            .map_err(|e| ImageError::io(&tmp, e))?;
        let file = std::fs::File::open(archive).map_err(|e| ImageError::io(archive, e))?;
        tar::Archive::new(file)
            .unpack(unpacked.path())
            .map_err(|e| ImageError::io(archive, e))?;
        Ok(unpacked)
    }
}

impl ImageStore for LocalImageStore {
    fn resolve(&self, image: &str) -> Result<Image, ImageError> {
        if image == HOST_IMAGE {
            return Ok(Image {
                name: HOST_IMAGE.into(),
                layers: vec![PathBuf::from("/")],
                config: ImageConfig::default(),
                digest: String::new(),
            });
        }
        let path = self.dir.join("refs").join(ref_file(image));
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.registry.is_some() && names_registry(image) {
                    return self.pull(image).map(|imported| imported.image);
                }
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
