//! The driver's persistent state: one JSON record per volume under
//! `<state-dir>/volumes/`, written atomically (temp file, fsync, rename,
//! fsync of the directory), so that a restarted driver knows its volumes,
//! where each is staged and where it is published.
//!
//! Stage and publish record their path *before* mounting and unstage and
//! unpublish forget it *after* unmounting: a driver killed in between finds
//! the path in its record and finishes the job on the CO's retry.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// What holds a volume's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backing {
    /// A sparse image file with a filesystem, loop-mounted: a hard capacity limit.
    Image,
    /// A plain directory on the state directory's filesystem: no capacity limit.
    Directory,
}

impl Backing {
    /// Parses the `backing` StorageClass parameter.
    pub fn parse(value: &str) -> Result<Self, Error> {
        match value {
            "image" => Ok(Self::Image),
            "directory" => Ok(Self::Directory),
            other => Err(Error::InvalidArgument(format!(
                "parameters.backing {other:?} is not supported: expected image or directory"
            ))),
        }
    }
}

/// A volume the driver created, and where it is staged and published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// Volume ID handed to the CO.
    pub id: String,
    /// The CO's name for the volume (CreateVolume `name`).
    pub name: String,
    /// Provisioned capacity in bytes (the image file's size).
    pub capacity_bytes: u64,
    /// Image file or directory.
    pub backing: Backing,
    /// Filesystem in the image (`ext4`); empty for directories.
    pub fs_type: String,
    /// CreateVolume parameters, compared when the same name comes again.
    pub parameters: BTreeMap<String, String>,
    /// The staging path, once NodeStageVolume has been asked for.
    pub staged: Option<PathBuf>,
    /// Target paths NodePublishVolume has been asked for, with read-only flag.
    pub published: BTreeMap<PathBuf, bool>,
    /// The image grew (ControllerExpandVolume) and its filesystem has not yet.
    #[serde(default)]
    pub needs_resize: bool,
}

/// The layout of the state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating) the state directory and its subdirectories.
    pub fn open(root: &Path) -> Result<Self, Error> {
        for sub in ["volumes", "images", "dirs"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The state directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image file of volume `id`.
    pub fn image_path(&self, id: &str) -> PathBuf {
        self.root.join("images").join(format!("{id}.img"))
    }

    /// The data directory of directory-backed volume `id`.
    pub fn dir_path(&self, id: &str) -> PathBuf {
        self.root.join("dirs").join(id)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.root.join("volumes").join(format!("{id}.json"))
    }

    /// Every volume record, by ID.
    pub fn load_all(&self) -> Result<BTreeMap<String, VolumeRecord>, Error> {
        let dir = self.root.join("volumes");
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let record: VolumeRecord =
                serde_json::from_slice(&text).map_err(|source| Error::State { path, source })?;
            out.insert(record.id.clone(), record);
        }
        Ok(out)
    }

    /// Writes `record` atomically.
    pub fn save(&self, record: &VolumeRecord) -> Result<(), Error> {
        let path = self.record_path(&record.id);
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(record).map_err(|source| Error::State {
            path: path.clone(),
            source,
        })?;
        let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        file.write_all(&json)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        self.sync_dir()
    }

    /// Forgets volume `id`.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        let path = self.record_path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn sync_dir(&self) -> Result<(), Error> {
        let dir = self.root.join("volumes");
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(&dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        let record = VolumeRecord {
            id: "v1".into(),
            name: "data".into(),
            capacity_bytes: 16 << 20,
            backing: Backing::Image,
            fs_type: "ext4".into(),
            parameters: BTreeMap::new(),
            staged: Some("/stage".into()),
            published: [(PathBuf::from("/pod/a"), true)].into_iter().collect(),
            needs_resize: false,
        };
        dir.save(&record).unwrap();
        let again = StateDir::open(tmp.path()).unwrap().load_all().unwrap();
        assert_eq!(again.get("v1"), Some(&record));
        dir.remove("v1").unwrap();
        dir.remove("v1").unwrap();
        assert!(dir.load_all().unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_record_names_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("volumes/bad.json"), "{").unwrap();
        let err = dir.load_all().unwrap_err().to_string();
        assert!(err.contains("bad.json"), "{err}");
    }
}
