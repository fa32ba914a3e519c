//! Built-in volumes, prepared under `<pod dir>/volumes/<name>` before any container
//! starts and bind-mounted into containers by the spec builder:
//! emptyDir (a directory, or a tmpfs of `sizeLimit` for `medium: Memory`), hostPath
//! (only under the agent's allowed prefixes), and secret, configMap, downwardAPI and
//! projected volumes written as files from data the caller provides ([`PodData`]; a
//! projected service-account token from the agent's [`tokens::TokenSource`]),
//! and `persistentVolumeClaim` volumes bound to CSI PersistentVolumes, staged and
//! published by the node's CSI drivers ([`crate::csi::CsiVolumes`]). `subPath` mounts
//! are opened so that they cannot leave their volume ([`subpath`]).

mod files;
pub mod subpath;
pub mod tokens;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use coxswain_api::k8s::Pod;
use coxswain_api::quantity::parse_quantity;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use crate::csi::CsiVolumes;

use crate::mounts::{MountError, Mounter, mounts_under};

/// Errors of the volume stage; each names the volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A hostPath outside the agent's allowed prefixes.
    #[error(
        "volume {volume:?}: hostPath {path} is not allowed on this node (agent allows {allowed})"
    )]
    HostPathNotAllowed {
        /// The volume name.
        volume: String,
        /// The requested host path.
        path: PathBuf,
        /// The allowed prefixes, for the message.
        allowed: String,
    },
    /// A referenced secret or configMap (or key) was not provided.
    #[error("volume {volume:?}: {kind} {name:?} not found")]
    MissingSource {
        /// The volume name.
        volume: String,
        /// `secret`, `configMap` or `key`.
        kind: &'static str,
        /// The missing object or key.
        name: String,
    },
    /// A volume type this agent does not handle.
    #[error(
        "volume {volume:?}: unsupported volume type (built in: emptyDir, hostPath, secret, configMap, downwardAPI, projected, persistentVolumeClaim of a CSI volume)"
    )]
    Unsupported {
        /// The volume name.
        volume: String,
    },
    /// The volume's claim is missing, not bound, or its volume is not there yet:
    /// the pod waits for a newer pod event.
    #[error("volume {volume:?}: persistentvolumeclaim {claim:?} {why}")]
    ClaimNotReady {
        /// The volume name.
        volume: String,
        /// The claim's name.
        claim: String,
        /// What it is waiting for.
        why: String,
    },
    /// A CSI driver refused or could not be reached.
    #[error("volume {volume:?}: {source}")]
    Csi {
        /// The volume name.
        volume: String,
        /// The driver's error.
        #[source]
        source: crate::csi::CsiError,
    },
    /// Unpublishing or unstaging the pod's CSI volumes failed (retried).
    #[error("unpublishing the pod's CSI volumes: {0}")]
    CsiTeardown(#[source] crate::csi::CsiError),
    /// A bad field value.
    #[error("volume {volume:?}: {message}")]
    Invalid {
        /// The volume name.
        volume: String,
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
    /// A mount failed.
    #[error(transparent)]
    Mount(#[from] MountError),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Secret and configMap contents the pod's volumes may reference (by name).
#[derive(Debug, Clone, Default)]
pub struct PodData {
    /// Secrets of the pod's namespace: name → key → bytes.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// ConfigMaps of the pod's namespace: name → key → bytes.
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// PersistentVolumeClaims the pod's volumes name, by name.
    pub claims: BTreeMap<String, PersistentVolumeClaim>,
    /// The PersistentVolumes those claims are bound to, by name.
    pub persistent_volumes: BTreeMap<String, PersistentVolume>,
}

/// Prepares and tears down a pod's volumes.
pub struct VolumeManager {
    allowed_host_paths: Vec<PathBuf>,
    mounter: Arc<dyn Mounter>,
    csi: Option<Arc<CsiVolumes>>,
    tokens: OnceLock<Arc<dyn tokens::TokenSource>>,
}

impl VolumeManager {
    /// A manager allowing hostPath volumes under `allowed_host_paths`.
    pub fn new(allowed_host_paths: Vec<PathBuf>, mounter: Arc<dyn Mounter>) -> Self {
        Self {
            allowed_host_paths,
            mounter,
            csi: None,
            tokens: OnceLock::new(),
        }
    }

    /// Where projected service-account tokens come from (set once, when the agent has
    /// its connection to the control plane; without it such volumes fail to set up).
    pub fn set_token_source(&self, source: Arc<dyn tokens::TokenSource>) {
        let _ = self.tokens.set(source);
    }

    fn token_source(&self) -> Option<&dyn tokens::TokenSource> {
        self.tokens.get().map(|t| &**t)
    }

    /// Rewrites the projected volumes of `pod` that carry a service-account token, so a
    /// token due for replacement is replaced (the token source decides when; files whose
    /// contents did not change are not touched).
    pub fn refresh_tokens(
        &self,
        pod: &Pod,
        pod_dir: &Path,
        data: &PodData,
    ) -> Result<(), VolumeError> {
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
        for v in volumes
            .into_iter()
            .flatten()
            .filter(|v| files::has_token(v))
        {
            let dir = pod_dir.join("volumes").join(&v.name);
            files::write_volume(v, pod, data, self.token_source(), &dir)?;
        }
        Ok(())
    }

    /// Stages `sub_path` of the volume at `volume_dir` at `target` for a container, so
    /// that it cannot resolve outside the volume ([`subpath`]).
    pub fn stage_sub_path(
        &self,
        volume_dir: &Path,
        sub_path: &str,
        target: &Path,
    ) -> Result<subpath::StagedSubPath, subpath::SubPathError> {
        subpath::stage_sub_path(self.mounter.clone(), volume_dir, sub_path, target)
    }

    /// The same manager, publishing claims' CSI volumes through `csi`.
    pub fn with_csi(mut self, csi: Arc<CsiVolumes>) -> Self {
        self.csi = Some(csi);
        self
    }

    /// The CSI volumes, when the node has CSI drivers.
    pub fn csi(&self) -> Option<&Arc<CsiVolumes>> {
        self.csi.as_ref()
    }

    /// Prepares every volume of `pod` under `<pod_dir>/volumes`; returns name → host path.
    /// Idempotent: existing directories and mounts are reused, files rewritten.
    pub fn setup(
        &self,
        pod: &Pod,
        pod_dir: &Path,
        data: &PodData,
    ) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
        let mut paths = BTreeMap::new();
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for v in &volumes {
            let dir = pod_dir.join("volumes").join(&v.name);
            let path = if let Some(host) = &v.host_path {
                let path = PathBuf::from(&host.path);
                if !self.allowed_host_paths.iter().any(|p| path.starts_with(p)) {
                    let allowed: Vec<String> = self
                        .allowed_host_paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect();
                    return Err(VolumeError::HostPathNotAllowed {
                        volume: v.name.clone(),
                        path,
                        allowed: if allowed.is_empty() {
                            "none".into()
                        } else {
                            allowed.join(", ")
                        },
                    });
                }
                if host.type_.as_deref() == Some("DirectoryOrCreate") {
                    std::fs::create_dir_all(&path).map_err(io(&path))?;
                }
                path
            } else if let Some(empty) = &v.empty_dir {
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                if empty.medium.as_deref() == Some("Memory") && !self.mounter.is_mounted(&dir) {
                    let size = match &empty.size_limit {
                        Some(q) => Some(parse_quantity(q).map_err(|e| VolumeError::Invalid {
                            volume: v.name.clone(),
                            message: format!("emptyDir.sizeLimit: {e}"),
                        })?),
                        None => None,
                    };
                    self.mounter
                        .tmpfs(&dir, size.map(|q| q.ceil_units().max(0) as u64))?;
                }
                dir
            } else if v.secret.is_some()
                || v.config_map.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
            {
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                files::write_volume(v, pod, data, self.token_source(), &dir)?;
                dir
            } else if let Some(claim) = &v.persistent_volume_claim {
                let source = crate::csi::source::claim_source(v, claim, data)?;
                let csi = self.csi.as_ref().ok_or_else(|| VolumeError::Csi {
                    volume: v.name.clone(),
                    source: crate::csi::CsiError::UnknownDriver {
                        driver: source.driver.clone(),
                        known: "none: the agent runs without --csi-driver".into(),
                    },
                })?;
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                csi.publish(&uid, &v.name, &source, &dir)
                    .map_err(|source| VolumeError::Csi {
                        volume: v.name.clone(),
                        source,
                    })?;
                dir
            } else if let Some(inline) = &v.csi {
                let source = crate::csi::source::inline_source(v, inline, pod);
                let csi = self.csi.as_ref().ok_or_else(|| VolumeError::Csi {
                    volume: v.name.clone(),
                    source: crate::csi::CsiError::UnknownDriver {
                        driver: source.driver.clone(),
                        known: "none: the agent runs without --csi-driver".into(),
                    },
                })?;
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                csi.publish(&uid, &v.name, &source, &dir)
                    .map_err(|source| VolumeError::Csi {
                        volume: v.name.clone(),
                        source,
                    })?;
                dir
            } else {
                return Err(VolumeError::Unsupported {
                    volume: v.name.clone(),
                });
            };
            paths.insert(v.name.clone(), path);
        }
        Ok(paths)
    }

    /// Unpublishes the pod's CSI volumes (and unstages those no pod uses any
    /// more), then unmounts and removes `<pod_dir>/volumes`; hostPath contents are
    /// never touched. A CSI failure leaves everything in place (retry later).
    pub fn teardown(&self, pod_dir: &Path) -> Result<(), VolumeError> {
        if let (Some(csi), Some(uid)) = (&self.csi, pod_dir.file_name()) {
            csi.unpublish_pod(&uid.to_string_lossy())
                .map_err(VolumeError::CsiTeardown)?;
        }
        if let (Some(tokens), Some(uid)) = (self.token_source(), pod_dir.file_name()) {
            tokens.forget(&uid.to_string_lossy());
        }
        let dir = pod_dir.join("volumes");
        for mount in mounts_under(&dir) {
            self.mounter.unmount(&mount)?;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }
}

#[cfg(test)]
mod tests;
