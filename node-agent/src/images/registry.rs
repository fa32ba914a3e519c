//! Pulling images from an OCI distribution registry with `oci-client`: the manifest
//! (for this machine's platform when the reference names an index) and config, then
//! each layer not yet in the store, streamed to a temporary blob, checked against its
//! digest and unpacked once under `<layers>/<hex digest>` like an imported layout's.
//!
//! Only references that name their registry are pulled (`host.domain/repo:tag`,
//! `host:port/repo`, `localhost/repo`): a short name such as `busybox` would silently
//! mean Docker Hub, so it must be imported or written out in full. Registries use
//! HTTPS (rustls with the system's roots) except those the agent lists as insecure
//! (`cox agent --insecure-registry HOST:PORT`), reached over plain HTTP. Pulls are
//! anonymous.

use std::path::Path;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::oci_layout::{image_config, unpack_layer, verify_digest};
use super::{Image, ImageError, Imported};

/// How images are pulled.
#[derive(Debug, Clone, Default)]
pub struct RegistryPuller {
    /// Registries (`host:port`) reached over plain HTTP.
    pub insecure: Vec<String>,
}

/// Whether `image` names its registry (its first path component has a `.` or a `:`,
/// or is `localhost`), as Docker decides it.
pub fn names_registry(image: &str) -> bool {
    match image.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

fn pull_error(image: &str, message: impl std::fmt::Display) -> ImageError {
    ImageError::Pull {
        image: image.to_string(),
        message: message.to_string(),
    }
}

impl RegistryPuller {
    /// A puller reaching `insecure` registries over plain HTTP.
    pub fn new(insecure: Vec<String>) -> Self {
        Self { insecure }
    }

    /// Pulls `image` into the store's `layers_dir` (`tmp_dir` holds blobs while they
    /// download). Blocks; runs its own small async runtime on a thread of its own, so
    /// it may be called from any thread, async or not.
    pub fn pull(
        &self,
        image: &str,
        layers_dir: &Path,
        tmp_dir: &Path,
    ) -> Result<Imported, ImageError> {
        let reference: Reference = image
            .parse()
            .map_err(|e| pull_error(image, format!("not an image reference: {e}")))?;
        let insecure = self.insecure.clone();
        let (owned, layers_dir, tmp_dir) = (
            image.to_string(),
            layers_dir.to_path_buf(),
            tmp_dir.to_path_buf(),
        );
        let job = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| pull_error(&owned, format!("starting the pull: {e}")))?;
            runtime.block_on(pull(&owned, &reference, insecure, &layers_dir, &tmp_dir))
        });
        job.join()
            .unwrap_or_else(|_| Err(pull_error(image, "the pull thread panicked")))
    }
}

async fn pull(
    image: &str,
    reference: &Reference,
    insecure: Vec<String>,
    layers_dir: &Path,
    tmp_dir: &Path,
) -> Result<Imported, ImageError> {
    // reqwest is built without a default crypto provider; take ring's (once per process).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure),
        ..ClientConfig::default()
    });
    let auth = RegistryAuth::Anonymous;
    let (manifest, digest, config) = client
        .pull_manifest_and_config(reference, &auth)
        .await
        .map_err(|e| pull_error(image, format!("{}: {e}", reference.resolve_registry())))?;
    let config: serde_json::Value = serde_json::from_str(&config)
        .map_err(|e| pull_error(image, format!("its config is not JSON: {e}")))?;
    std::fs::create_dir_all(tmp_dir).map_err(|e| ImageError::io(tmp_dir, e))?;
    let mut layers = Vec::new();
    let mut unpacked = 0;
    for layer in &manifest.layers {
        let hex = sha256_hex(&layer.digest)
            .ok_or_else(|| pull_error(image, format!("unsupported digest {:?}", layer.digest)))?;
        let dest = layers_dir.join(hex);
        if !dest.exists() {
            let blob = tempfile::Builder::new()
                .prefix(&super::temporaries::prefix("blob-"))
                .tempfile_in(tmp_dir)
                .map_err(|e| ImageError::io(tmp_dir, e))?;
            let file = tokio::fs::File::create(blob.path())
                .await
                .map_err(|e| ImageError::io(blob.path(), e))?;
            client
                .pull_blob(reference, layer, file)
                .await
                .map_err(|e| pull_error(image, format!("layer {}: {e}", layer.digest)))?;
            verify_digest(Path::new(image), blob.path(), hex)?;
            unpack_layer(blob.path(), layers_dir, &dest)?;
            unpacked += 1;
        }
        layers.push(dest);
    }
    let image = Image {
        name: image.to_string(),
        layers,
        config: image_config(&config),
        digest,
    };
    Ok(Imported { image, unpacked })
}

/// The hex part of a `sha256:<64 hex>` digest.
fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_references_naming_a_registry_are_pulled() {
        for pulled in [
            "nvcr.io/nvidia/pytorch:24.01-py3",
            "127.0.0.1:5000/test/busybox:1.0",
            "localhost/trainer",
            "registry.example.com:443/a/b@sha256:0000",
        ] {
            assert!(names_registry(pulled), "{pulled}");
        }
        for local in [
            "busybox",
            "library/busybox:1.36",
            "host",
            "my-team/trainer:v1",
        ] {
            assert!(!names_registry(local), "{local}");
        }
    }

    #[test]
    fn a_bad_reference_is_a_pull_error_naming_the_image() {
        let puller = RegistryPuller::default();
        let dir = tempfile::tempdir().unwrap();
        let err = puller
            .pull("127.0.0.1:1/UPPER/Case:tag", dir.path(), dir.path())
            .unwrap_err();
        assert_eq!(err.reason(), "ErrImagePull");
        assert!(
            err.to_string().contains("127.0.0.1:1/UPPER/Case:tag"),
            "{err}"
        );
    }
}
