//! The agent's record of what it may have mounted through CSI drivers:
//! `<root>/csi/journal.json`, one JSON document rewritten atomically (temp file,
//! fsync, rename, fsync of the directory). A stage or publish is recorded
//! *before* the call that mounts it, and forgotten only *after* the unpublish or
//! unstage succeeded, so an agent killed at any point knows on restart every
//! mount it may have left, and unmounts those of pods that are gone.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CsiError;

/// A volume staged (or being staged) on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedVolume {
    /// The driver's name.
    pub driver: String,
    /// The CSI volume ID (a PV's `volumeHandle`).
    pub volume_id: String,
    /// The staging path given to NodeStageVolume.
    pub staging_path: PathBuf,
}

/// A volume published (or being published) into one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Publication {
    /// The pod's uid.
    pub pod_uid: String,
    /// The pod volume's name.
    pub volume: String,
    /// The driver's name.
    pub driver: String,
    /// The CSI volume ID.
    pub volume_id: String,
    /// The target path given to NodePublishVolume.
    pub target: PathBuf,
}

/// Everything the agent may have staged or published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountJournal {
    /// Staged volumes by [`volume_key`].
    #[serde(default)]
    pub staged: BTreeMap<String, StagedVolume>,
    /// Publications by [`publication_key`].
    #[serde(default)]
    pub published: BTreeMap<String, Publication>,
}

/// The key of a staged volume: `<driver>/<volume ID>`.
pub fn volume_key(driver: &str, volume_id: &str) -> String {
    format!("{driver}/{volume_id}")
}

/// The key of a publication: `<pod uid>/<volume name>`.
pub fn publication_key(pod_uid: &str, volume: &str) -> String {
    format!("{pod_uid}/{volume}")
}

impl MountJournal {
    /// Reads the journal at `path`; a missing file is an empty journal.
    pub fn load(path: &Path) -> Result<Self, CsiError> {
        let error = |message: String| CsiError::Journal {
            path: path.to_path_buf(),
            message,
        };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| error(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(error(e.to_string())),
        }
    }

    /// Writes the journal to `path` atomically and durably.
    pub fn save(&self, path: &Path) -> Result<(), CsiError> {
        let error = |e: std::io::Error| CsiError::Journal {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(error)?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| error(std::io::Error::other(e)))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(error)?;
        tmp.write_all(&json).map_err(error)?;
        tmp.as_file().sync_all().map_err(error)?;
        tmp.persist(path).map_err(|e| error(e.error))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(error)
    }

    /// How many publications use the volume `key`.
    pub fn users(&self, key: &str) -> usize {
        self.published
            .values()
            .filter(|p| volume_key(&p.driver, &p.volume_id) == key)
            .count()
    }

    /// The publications of pod `uid`.
    pub fn pod_publications(&self, uid: &str) -> Vec<Publication> {
        self.published
            .values()
            .filter(|p| p.pod_uid == uid)
            .cloned()
            .collect()
    }
}
