//! From a pod's `persistentVolumeClaim` volume to what the CSI calls need: the
//! claim (from the pod event), the PersistentVolume it is bound to, and that
//! volume's `csi` source; from an inline `csi` volume to an ephemeral source;
//! Kubernetes' access modes as CSI access modes.

use std::collections::BTreeMap;

use coxswain_proto::csi::v1::VolumeCapability;
use coxswain_proto::csi::v1::volume_capability::access_mode::Mode;
use coxswain_proto::csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use k8s_openapi::api::core::v1::{CSIVolumeSource, PersistentVolumeClaimVolumeSource, Pod, Volume};

use crate::volumes::{PodData, VolumeError};

/// A pod volume backed by a CSI PersistentVolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsiSource {
    /// The driver's name.
    pub driver: String,
    /// The PV's `volumeHandle`.
    pub volume_id: String,
    /// The PV's `volumeAttributes`.
    pub volume_context: BTreeMap<String, String>,
    /// The PV's `fsType` (empty: the driver's default).
    pub fs_type: String,
    /// The PV's `mountOptions`.
    pub mount_flags: Vec<String>,
    /// The CSI access mode of the PV's first access mode.
    pub access_mode: Mode,
    /// Whether the pod gets it read-only.
    pub readonly: bool,
    /// An ephemeral inline volume: published without a stage (the driver makes it on
    /// publish and deletes it on unpublish).
    pub ephemeral: bool,
}

impl CsiSource {
    /// The volume capability for stage and publish.
    pub fn capability(&self) -> VolumeCapability {
        VolumeCapability {
            access_mode: Some(AccessMode {
                mode: self.access_mode as i32,
            }),
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: self.fs_type.clone(),
                mount_flags: self.mount_flags.clone(),
                volume_mount_group: String::new(),
            })),
        }
    }
}

/// Kubernetes' access mode as CSI's, as kubelet maps it.
pub fn access_mode(mode: &str) -> Option<Mode> {
    Some(match mode {
        "ReadWriteOnce" => Mode::SingleNodeWriter,
        "ReadOnlyMany" => Mode::MultiNodeReaderOnly,
        "ReadWriteMany" => Mode::MultiNodeMultiWriter,
        "ReadWriteOncePod" => Mode::SingleNodeSingleWriter,
        _ => return None,
    })
}

/// The CSI source of pod volume `volume` (a `persistentVolumeClaim` volume) from
/// the claims and volumes of the pod event. A claim that is missing, not bound,
/// or whose volume is not there yet is [`VolumeError::ClaimNotReady`]: the pod
/// waits for a newer event.
pub fn claim_source(
    volume: &Volume,
    claim_ref: &PersistentVolumeClaimVolumeSource,
    data: &PodData,
) -> Result<CsiSource, VolumeError> {
    let name = &volume.name;
    let claim_name = &claim_ref.claim_name;
    let not_ready = |why: String| VolumeError::ClaimNotReady {
        volume: name.clone(),
        claim: claim_name.clone(),
        why,
    };
    let invalid = |message: String| VolumeError::Invalid {
        volume: name.clone(),
        message,
    };
    let claim = data
        .claims
        .get(claim_name)
        .ok_or_else(|| not_ready("not found".into()))?;
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    let pv_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty());
    let pv_name = match (phase, pv_name) {
        (Some("Bound"), Some(pv)) => pv,
        (Some("Lost"), _) => return Err(not_ready("has lost its volume (phase Lost)".into())),
        _ => return Err(not_ready("is not bound to a volume yet".into())),
    };
    let pv = data.persistent_volumes.get(&pv_name).ok_or_else(|| {
        not_ready(format!(
            "is bound to volume {pv_name:?}, which is not there"
        ))
    })?;
    let spec = pv.spec.clone().unwrap_or_default();
    let Some(csi) = spec.csi else {
        return Err(invalid(format!(
            "persistent volume {pv_name:?} of claim {claim_name:?} has no csi source (only CSI volumes are supported)"
        )));
    };
    if spec.volume_mode.as_deref() == Some("Block") {
        return Err(invalid(format!(
            "persistent volume {pv_name:?}: volumeMode Block is not supported, use Filesystem"
        )));
    }
    let first_mode = spec
        .access_modes
        .as_ref()
        .and_then(|m| m.first().cloned())
        .unwrap_or_else(|| "ReadWriteOnce".into());
    let access_mode = access_mode(&first_mode).ok_or_else(|| {
        invalid(format!(
            "persistent volume {pv_name:?}: spec.accessModes[0] {first_mode:?} is not an access mode"
        ))
    })?;
    let readonly = claim_ref.read_only == Some(true)
        || csi.read_only == Some(true)
        || first_mode == "ReadOnlyMany";
    Ok(CsiSource {
        driver: csi.driver,
        volume_id: csi.volume_handle,
        volume_context: csi.volume_attributes.unwrap_or_default(),
        fs_type: csi.fs_type.unwrap_or_default(),
        mount_flags: spec.mount_options.unwrap_or_default(),
        access_mode,
        readonly,
        ephemeral: false,
    })
}

/// The source of pod volume `volume`, an inline (ephemeral) `csi` volume of `pod`: the
/// volume ID kubelet gives it (`csi-` + sha256 of the pod uid and the volume name), and
/// the volume context it passes — the volume's attributes, the ephemeral flag and the
/// pod's identity.
pub fn inline_source(volume: &Volume, inline: &CSIVolumeSource, pod: &Pod) -> CsiSource {
    use sha2::{Digest, Sha256};
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let digest = Sha256::digest(format!("{uid}{}", volume.name));
    let mut volume_context = inline.volume_attributes.clone().unwrap_or_default();
    let service_account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    for (key, value) in [
        ("csi.storage.k8s.io/ephemeral", "true".to_string()),
        (
            "csi.storage.k8s.io/pod.name",
            pod.metadata.name.clone().unwrap_or_default(),
        ),
        (
            "csi.storage.k8s.io/pod.namespace",
            pod.metadata.namespace.clone().unwrap_or_default(),
        ),
        ("csi.storage.k8s.io/pod.uid", uid),
        ("csi.storage.k8s.io/serviceAccount.name", service_account),
    ] {
        volume_context.insert(key.to_string(), value);
    }
    CsiSource {
        driver: inline.driver.clone(),
        volume_id: format!("csi-{digest:x}"),
        volume_context,
        fs_type: inline.fs_type.clone().unwrap_or_default(),
        mount_flags: Vec::new(),
        access_mode: Mode::SingleNodeWriter,
        readonly: inline.read_only == Some(true),
        ephemeral: true,
    }
}
