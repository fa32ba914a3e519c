//! Which volume capabilities the driver supports: mount access (not block),
//! single-node access modes, and ext4 (or the default) as filesystem.

use coxswain_proto::csi::v1::VolumeCapability;
use coxswain_proto::csi::v1::volume_capability::access_mode::Mode;
use coxswain_proto::csi::v1::volume_capability::{AccessMode, AccessType};

use crate::Error;

/// The access modes a node-local volume can offer.
pub const SUPPORTED_MODES: &[Mode] = &[
    Mode::SingleNodeWriter,
    Mode::SingleNodeReaderOnly,
    Mode::SingleNodeSingleWriter,
    Mode::SingleNodeMultiWriter,
];

/// Checks one capability; returns whether its access mode is read-only.
/// `field` names the request field in errors.
pub fn check(cap: &VolumeCapability, field: &str) -> Result<bool, Error> {
    match &cap.access_type {
        None => return Err(Error::missing(&format!("{field}.access_type"))),
        Some(AccessType::Block(_)) => {
            return Err(Error::InvalidArgument(format!(
                "{field}.block: block volumes are not supported, use mount"
            )));
        }
        Some(AccessType::Mount(mount)) => {
            if !matches!(mount.fs_type.as_str(), "" | "ext4") {
                return Err(Error::InvalidArgument(format!(
                    "{field}.mount.fs_type {:?} is not supported: only ext4",
                    mount.fs_type
                )));
            }
        }
    }
    let Some(AccessMode { mode }) = cap.access_mode else {
        return Err(Error::missing(&format!("{field}.access_mode")));
    };
    let mode = Mode::try_from(mode).unwrap_or(Mode::Unknown);
    if !SUPPORTED_MODES.contains(&mode) {
        return Err(Error::InvalidArgument(format!(
            "{field}.access_mode {}: not supported by a node-local volume (use a SINGLE_NODE_* mode)",
            mode.as_str_name()
        )));
    }
    Ok(mode == Mode::SingleNodeReaderOnly)
}

/// Checks a non-empty list of capabilities (CreateVolume,
/// ValidateVolumeCapabilities).
pub fn check_all(caps: &[VolumeCapability], field: &str) -> Result<(), Error> {
    if caps.is_empty() {
        return Err(Error::missing(field));
    }
    for (i, cap) in caps.iter().enumerate() {
        check(cap, &format!("{field}[{i}]"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use coxswain_proto::csi::v1::volume_capability::{BlockVolume, MountVolume};

    use super::*;

    fn cap(access: AccessType, mode: Mode) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(access),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }

    #[test]
    fn single_node_mount_is_supported_and_reader_only_is_read_only() {
        let mount = AccessType::Mount(MountVolume::default());
        assert!(!check(&cap(mount.clone(), Mode::SingleNodeWriter), "c").unwrap());
        assert!(check(&cap(mount, Mode::SingleNodeReaderOnly), "c").unwrap());
    }

    #[test]
    fn block_multi_node_and_missing_parts_are_invalid() {
        let block = cap(AccessType::Block(BlockVolume {}), Mode::SingleNodeWriter);
        assert!(
            check(&block, "c")
                .unwrap_err()
                .to_string()
                .contains("block")
        );
        let multi = cap(
            AccessType::Mount(MountVolume::default()),
            Mode::MultiNodeMultiWriter,
        );
        assert!(
            check(&multi, "c")
                .unwrap_err()
                .to_string()
                .contains("MULTI_NODE")
        );
        let err = check(&VolumeCapability::default(), "c").unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(check_all(&[], "volume_capabilities").is_err());
    }
}
