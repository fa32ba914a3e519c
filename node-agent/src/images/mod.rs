//! Root filesystems behind [`ImageStore`]: the worker resolves a pod's `image` to
//! read-only layers plus the image's defaults, and gets one overlay mount per
//! container (`<container dir>/rootfs`, writable upper layer beside it).
//!
//! [`LocalImageStore`] serves `host` (the host's `/` read-only, for bare-metal ML
//! environments), imported OCI image layouts and archives ([`oci_layout`],
//! content-addressed: each layer unpacked once under `layers/<sha256>`), and plain
//! rootfs directories such as the busybox test fixture ([`busybox`]), and pulls from
//! OCI registries the images it does not have ([`registry`]).

pub mod busybox;
pub mod oci_layout;
pub mod registry;
mod store;
mod temporaries;

use std::path::PathBuf;

pub use registry::RegistryPuller;
pub use store::{Imported, LocalImageStore};

/// The image name that selects the host's root filesystem.
pub const HOST_IMAGE: &str = "host";

/// Errors of the image stage.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image is not in the store.
    #[error("image {image:?} not found (import it with `cox image import`)")]
    NotFound {
        /// The image reference.
        image: String,
    },
    /// Pulling the image from its registry failed.
    #[error("pulling image {image:?}: {message}")]
    Pull {
        /// The image reference.
        image: String,
        /// The registry's or the transport's error.
        message: String,
    },
    /// The image is malformed.
    #[error("image {image:?}: {message}")]
    Invalid {
        /// The image reference or path.
        image: String,
        /// What is wrong.
        message: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Mounting the root filesystem failed.
    #[error(transparent)]
    Mount(#[from] crate::mounts::MountError),
}

impl ImageError {
    /// The Kubernetes waiting reason for this error (`ErrImagePull` or `CreateContainerError`).
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::NotFound { .. } | ImageError::Invalid { .. } | ImageError::Pull { .. } => {
                "ErrImagePull"
            }
            _ => "CreateContainerError",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// An image's runtime defaults (from its OCI config).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    /// Default entrypoint.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// Default command (arguments to the entrypoint).
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Default environment (`KEY=value`).
    #[serde(default)]
    pub env: Vec<String>,
    /// Default working directory.
    #[serde(default)]
    pub working_dir: String,
}

/// A resolved image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Image {
    /// The reference it was resolved from.
    pub name: String,
    /// Its layers' directories, bottom layer first.
    pub layers: Vec<PathBuf>,
    /// Its defaults.
    pub config: ImageConfig,
    /// Its manifest's digest (`sha256:<hex>`); empty for a directory registered in place.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

/// Where images come from and how a container's root filesystem is made.
pub trait ImageStore: Send + Sync {
    /// Finds `image`; [`ImageError::NotFound`] when it is not there.
    fn resolve(&self, image: &str) -> Result<Image, ImageError>;
    /// Mounts `image` as `<dir>/rootfs` (overlay, writable upper in `dir`); idempotent.
    fn mount_rootfs(&self, image: &Image, dir: &std::path::Path) -> Result<PathBuf, ImageError>;
    /// Unmounts `<dir>/rootfs`; a missing mount is fine.
    fn unmount_rootfs(&self, dir: &std::path::Path) -> Result<(), ImageError>;
}
#[cfg(test)]
mod tests;
