//! The mount lifecycle of CSI volumes on this node. Every step holds one lock and
//! writes the [`MountJournal`] before it mounts:
//!
//! - **publish** (a pod's prepare step, before any container starts):
//!   record the stage → NodeStageVolume at `<root>/csi/staging/<driver>/<sha256 of
//!   the volume ID>` (once per node; only for drivers with STAGE_UNSTAGE_VOLUME;
//!   repeated every time, so nothing is ever published that is not staged, even
//!   after a reboot) → record the publication → NodePublishVolume at the pod's
//!   volume directory.
//! - **unpublish** (the pod's teardown, after its containers are gone):
//!   NodeUnpublishVolume → forget the publication → NodeUnstageVolume of every
//!   staged volume no publication uses any more → forget the stage.
//! - **recover** (once the agent knows which pods it still has): unpublish the
//!   recorded publications of pods a previous agent ran that are gone, and unstage
//!   what nobody uses (an agent killed between unpublish and unstage).
//!
//! The calls block the calling thread (a pod worker's, or `spawn_blocking`) on the
//! agent's runtime.

use std::collections::BTreeSet;
use std::collections::btree_map::Entry;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use coxswain_proto::csi::v1::{
    NodePublishVolumeRequest, NodeStageVolumeRequest, NodeUnpublishVolumeRequest,
    NodeUnstageVolumeRequest,
};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;

use super::journal::{Publication, StagedVolume, publication_key, volume_key};
use super::{CsiDrivers, CsiError, CsiSource, MountJournal, call};

/// The CSI volumes of the node's pods.
pub struct CsiVolumes {
    dir: PathBuf,
    drivers: CsiDrivers,
    journal: Mutex<MountJournal>,
    /// Pods with publications when the agent started: the only ones recovery may clean.
    previous_pods: BTreeSet<String>,
    runtime: Handle,
}

impl std::fmt::Debug for CsiVolumes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsiVolumes")
            .field("dir", &self.dir)
            .finish()
    }
}

impl CsiVolumes {
    /// The CSI volumes under `<agent_root>/csi`, reading the journal a previous
    /// agent left; calls run on `runtime`.
    pub fn open(agent_root: &Path, drivers: CsiDrivers, runtime: Handle) -> Result<Self, CsiError> {
        let dir = agent_root.join("csi");
        let journal = MountJournal::load(&dir.join("journal.json"))?;
        let previous_pods = journal
            .published
            .values()
            .map(|p| p.pod_uid.clone())
            .collect();
        Ok(Self {
            dir,
            drivers,
            journal: Mutex::new(journal),
            previous_pods,
            runtime,
        })
    }

    /// The drivers the volumes are mounted with.
    pub fn drivers(&self) -> &CsiDrivers {
        &self.drivers
    }

    /// A copy of the journal.
    pub fn journal(&self) -> MountJournal {
        self.lock().clone()
    }

    /// The staging path of `volume_id` of `driver`.
    pub fn staging_path(&self, driver: &str, volume_id: &str) -> PathBuf {
        let hash = format!("{:x}", Sha256::digest(volume_id.as_bytes()));
        self.dir.join("staging").join(driver).join(&hash[..32])
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join("journal.json")
    }

    fn lock(&self) -> MutexGuard<'_, MountJournal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stages (when the driver stages) and publishes `source` for volume `volume`
    /// of pod `pod_uid` at `target`. Idempotent.
    pub fn publish(
        &self,
        pod_uid: &str,
        volume: &str,
        source: &CsiSource,
        target: &Path,
    ) -> Result<(), CsiError> {
        let driver = self.drivers.get(&source.driver)?;
        let mut journal = self.lock();
        let capability = source.capability();
        // Ephemeral inline volumes are published only, as kubelet does.
        let staging = if driver.stage_unstage && !source.ephemeral {
            let staging = self.staging_path(&source.driver, &source.volume_id);
            let key = volume_key(&source.driver, &source.volume_id);
            if let Entry::Vacant(entry) = journal.staged.entry(key) {
                entry.insert(StagedVolume {
                    driver: source.driver.clone(),
                    volume_id: source.volume_id.clone(),
                    staging_path: staging.clone(),
                });
                journal.save(&self.journal_path())?;
            }
            if let Some(parent) = staging.parent() {
                std::fs::create_dir_all(parent).map_err(|e| CsiError::Journal {
                    path: parent.to_path_buf(),
                    message: format!("creating the staging directory: {e}"),
                })?;
            }
            let mut client = driver.client.node.clone();
            let request = NodeStageVolumeRequest {
                volume_id: source.volume_id.clone(),
                staging_target_path: staging.display().to_string(),
                volume_capability: Some(capability.clone()),
                volume_context: source.volume_context.clone().into_iter().collect(),
                ..Default::default()
            };
            self.runtime.block_on(call(
                &source.driver,
                "NodeStageVolume",
                &source.volume_id,
                client.node_stage_volume(request),
            ))?;
            staging.display().to_string()
        } else {
            String::new()
        };
        let key = publication_key(pod_uid, volume);
        if let Entry::Vacant(entry) = journal.published.entry(key) {
            entry.insert(Publication {
                pod_uid: pod_uid.to_string(),
                volume: volume.to_string(),
                driver: source.driver.clone(),
                volume_id: source.volume_id.clone(),
                target: target.to_path_buf(),
            });
            journal.save(&self.journal_path())?;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CsiError::Journal {
                path: parent.to_path_buf(),
                message: format!("creating the pod's volume directory: {e}"),
            })?;
        }
        let mut client = driver.client.node.clone();
        let request = NodePublishVolumeRequest {
            volume_id: source.volume_id.clone(),
            staging_target_path: staging,
            target_path: target.display().to_string(),
            volume_capability: Some(capability),
            readonly: source.readonly,
            volume_context: source.volume_context.clone().into_iter().collect(),
            ..Default::default()
        };
        self.runtime.block_on(call(
            &source.driver,
            "NodePublishVolume",
            &source.volume_id,
            client.node_publish_volume(request),
        ))?;
        Ok(())
    }

    /// Unpublishes every volume of pod `pod_uid`, then unstages what nobody uses.
    pub fn unpublish_pod(&self, pod_uid: &str) -> Result<(), CsiError> {
        let mut journal = self.lock();
        let mut used = BTreeSet::new();
        for publication in journal.pod_publications(pod_uid) {
            self.unpublish(&mut journal, &publication)?;
            used.insert(volume_key(&publication.driver, &publication.volume_id));
        }
        self.unstage_unused(&mut journal, Some(&used))
    }

    /// Cleans what pods of a previous agent left: publications of those not in
    /// `keep`, then every staged volume without a publication. Returns the pods
    /// whose volumes it unpublished.
    pub fn recover(&self, keep: &BTreeSet<String>) -> Result<BTreeSet<String>, CsiError> {
        let mut journal = self.lock();
        let gone: Vec<Publication> = journal
            .published
            .values()
            .filter(|p| self.previous_pods.contains(&p.pod_uid) && !keep.contains(&p.pod_uid))
            .cloned()
            .collect();
        let mut pods = BTreeSet::new();
        let mut first_error = None;
        for publication in gone {
            match self.unpublish(&mut journal, &publication) {
                Ok(()) => {
                    pods.insert(publication.pod_uid);
                }
                Err(e) => {
                    tracing::warn!("recovering CSI mounts: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        self.unstage_unused(&mut journal, None)?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(pods),
        }
    }

    fn unpublish(
        &self,
        journal: &mut MountJournal,
        publication: &Publication,
    ) -> Result<(), CsiError> {
        let driver = self.drivers.get(&publication.driver)?;
        let mut client = driver.client.node.clone();
        let request = NodeUnpublishVolumeRequest {
            volume_id: publication.volume_id.clone(),
            target_path: publication.target.display().to_string(),
        };
        gone_is_done(self.runtime.block_on(call(
            &publication.driver,
            "NodeUnpublishVolume",
            &publication.volume_id,
            client.node_unpublish_volume(request),
        )))?;
        journal
            .published
            .remove(&publication_key(&publication.pod_uid, &publication.volume));
        journal.save(&self.journal_path())
    }

    /// Unstages every staged volume no publication uses (of `only`, when given);
    /// stops at the first failure.
    fn unstage_unused(
        &self,
        journal: &mut MountJournal,
        only: Option<&BTreeSet<String>>,
    ) -> Result<(), CsiError> {
        let unused: Vec<(String, StagedVolume)> = journal
            .staged
            .iter()
            .filter(|(key, _)| only.is_none_or(|keys| keys.contains(*key)))
            .filter(|(key, _)| journal.users(key) == 0)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, staged) in unused {
            let driver = self.drivers.get(&staged.driver)?;
            let mut client = driver.client.node.clone();
            let request = NodeUnstageVolumeRequest {
                volume_id: staged.volume_id.clone(),
                staging_target_path: staged.staging_path.display().to_string(),
            };
            gone_is_done(self.runtime.block_on(call(
                &staged.driver,
                "NodeUnstageVolume",
                &staged.volume_id,
                client.node_unstage_volume(request),
            )))?;
            journal.staged.remove(&key);
            journal.save(&self.journal_path())?;
            tracing::info!(driver = %staged.driver, volume = %staged.volume_id, "CSI volume unstaged");
        }
        Ok(())
    }
}

/// An unpublish or unstage of a volume the driver no longer knows (NotFound: it
/// was deleted, or the agent died before its stage reached the driver) has
/// nothing left to unmount.
fn gone_is_done<T>(result: Result<T, CsiError>) -> Result<(), CsiError> {
    match result {
        Ok(_) => Ok(()),
        Err(CsiError::Call {
            code: tonic::Code::NotFound,
            ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}
