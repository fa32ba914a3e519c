//! Importing an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`):
//! the manifest and config are read, each layer (tar, optionally gzip) is unpacked
//! once into `<layers>/<hex digest>` (content-addressed: a layer shared by two
//! images, or imported twice, is unpacked once) with overlayfs whiteouts for
//! deleted files.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Image, ImageConfig, ImageError, Imported};

fn invalid(layout: &Path, message: impl Into<String>) -> ImageError {
    ImageError::Invalid {
        image: layout.display().to_string(),
        message: message.into(),
    }
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let (algo, hex) = digest
        .split_once(':')
        .ok_or_else(|| invalid(layout, format!("bad digest {digest:?}")))?;
    if algo != "sha256" || hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid(layout, format!("unsupported digest {digest:?}")));
    }
    Ok(layout.join("blobs").join(algo).join(hex))
}

fn read_json(layout: &Path, path: &Path) -> Result<Value, ImageError> {
    let text = std::fs::read(path).map_err(|e| ImageError::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| invalid(layout, format!("{}: {e}", path.display())))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Imports the image in `layout` (the manifest whose `org.opencontainers.image.ref.name`
/// is `name`, else the first), unpacking new layers below `layers_dir`. Without `name`
/// the image is named by the first manifest's ref name annotation.
pub fn import(
    layout: &Path,
    layers_dir: &Path,
    name: Option<&str>,
) -> Result<Imported, ImageError> {
    if !layout.join("index.json").is_file() {
        return Err(invalid(
            layout,
            "not an OCI image layout (no index.json); give a layout directory or a .tar of one",
        ));
    }
    let index = read_json(layout, &layout.join("index.json"))?;
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let ref_name = |m: &Value| {
        m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .map(str::to_string)
    };
    let chosen = manifests
        .iter()
        .find(|m| name.is_some() && ref_name(m).as_deref() == name)
        .or_else(|| manifests.first())
        .ok_or_else(|| invalid(layout, "index.json lists no manifest"))?;
    let name = match name.map(str::to_string).or_else(|| ref_name(chosen)) {
        Some(name) if !name.is_empty() => name,
        _ => {
            return Err(invalid(
                layout,
                "the index names no image (org.opencontainers.image.ref.name); give a name",
            ));
        }
    };
    let manifest_digest = chosen["digest"].as_str().unwrap_or("").to_string();
    let manifest = read_json(layout, &blob_path(layout, &manifest_digest)?)?;
    let config_digest = manifest["config"]["digest"].as_str().unwrap_or("");
    let config = read_json(layout, &blob_path(layout, config_digest)?)?;
    let image_config = image_config(&config);
    let mut layers = Vec::new();
    let mut unpacked = 0;
    for layer in manifest["layers"].as_array().cloned().unwrap_or_default() {
        let digest = layer["digest"].as_str().unwrap_or("");
        let blob = blob_path(layout, digest)?;
        let hex = blob
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dest = layers_dir.join(&hex);
        if !dest.exists() {
            verify_digest(layout, &blob, &hex)?;
            unpack_layer(&blob, layers_dir, &dest)?;
            unpacked += 1;
        }
        layers.push(dest);
    }
    let image = Image {
        name,
        layers,
        config: image_config,
        digest: manifest_digest,
    };
    Ok(Imported { image, unpacked })
}

/// The runtime defaults of an OCI image config (JSON).
pub(crate) fn image_config(config: &Value) -> ImageConfig {
    let c = &config["config"];
    ImageConfig {
        entrypoint: strings(&c["Entrypoint"]),
        cmd: strings(&c["Cmd"]),
        env: strings(&c["Env"]),
        working_dir: c["WorkingDir"].as_str().unwrap_or("").to_string(),
    }
}

/// Unpacks one layer blob into `dest` via a temporary sibling, renamed when complete.
pub(crate) fn unpack_layer(blob: &Path, layers_dir: &Path, dest: &Path) -> Result<(), ImageError> {
    std::fs::create_dir_all(layers_dir).map_err(|e| ImageError::io(layers_dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(&super::temporaries::prefix(".unpack-"))
        .tempdir_in(layers_dir)
        .map_err(|e| ImageError::io(layers_dir, e))?;
    let mut file = BufReader::new(File::open(blob).map_err(|e| ImageError::io(blob, e))?);
    let mut magic = [0u8; 2];
    let gz = file.get_mut().read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file = File::open(blob).map_err(|e| ImageError::io(blob, e))?;
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    for entry in archive.entries().map_err(|e| ImageError::io(blob, e))? {
        let mut entry = entry.map_err(|e| ImageError::io(blob, e))?;
        let path = entry
            .path()
            .map_err(|e| ImageError::io(blob, e))?
            .into_owned();
        let file_name = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if file_name == ".wh..wh..opq" {
            // Opaque directories need a trusted.overlay xattr; not supported yet.
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(".wh.") {
            let target = tmp.path().join(path.with_file_name(hidden));
            whiteout(&target)?;
            continue;
        }
        entry
            .unpack_in(tmp.path())
            .map_err(|e| ImageError::io(tmp.path().join(&path), e))?;
    }
    let tmp = tmp.keep();
    match std::fs::rename(&tmp, dest) {
        Ok(()) => Ok(()),
        // Another import unpacked the same layer meanwhile: keep theirs.
        Err(_) if dest.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => Err(ImageError::io(dest, e)),
    }
}

/// An overlayfs whiteout: a 0:0 character device hiding a lower file.
fn whiteout(target: &Path) -> Result<(), ImageError> {
    use nix::sys::stat::{Mode, SFlag, mknod};
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
    }
    mknod(target, SFlag::S_IFCHR, Mode::empty(), 0)
        .map_err(|e| ImageError::io(target, std::io::Error::from(e)))
}

/// Checks that the blob's content hashes to its name.
pub(crate) fn verify_digest(layout: &Path, blob: &Path, hex: &str) -> Result<(), ImageError> {
    use sha2::{Digest, Sha256};
    let mut file = File::open(blob).map_err(|e| ImageError::io(blob, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| ImageError::io(blob, e))?;
    let actual = format!("{:x}", hasher.finalize());
    if actual != hex {
        return Err(invalid(
            layout,
            format!("layer {hex}: content hashes to {actual}"),
        ));
    }
    Ok(())
}
