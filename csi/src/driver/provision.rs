//! Provisioning on this node: CreateVolume, DeleteVolume,
//! ControllerExpandVolume and the capacity arithmetic behind them.

use std::collections::{BTreeMap, HashMap};

use coxswain_proto::csi::v1::{CapacityRange, CreateVolumeRequest, TopologyRequirement, Volume};

use super::state::{Backing, VolumeRecord};
use super::{Driver, TOPOLOGY_KEY, capability, volume_id};
use crate::Error;

/// The smallest volume: ext4 needs room for its metadata.
pub const MIN_VOLUME_BYTES: u64 = 1 << 20;
/// Sizes are whole filesystem blocks.
const BLOCK: u64 = 4096;
/// Prefix of parameters the Kubernetes external-provisioner adds itself.
const K8S_PARAM_PREFIX: &str = "csi.storage.k8s.io/";

/// Parses `1073741824`, `512Mi`, `1Gi` and friends.
pub fn parse_bytes(value: &str) -> Result<u64, String> {
    let (digits, shift) = match value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (value, 0),
        Some((i, _)) => match &value[i..] {
            "Ki" => (&value[..i], 10),
            "Mi" => (&value[..i], 20),
            "Gi" => (&value[..i], 30),
            "Ti" => (&value[..i], 40),
            other => {
                return Err(format!(
                    "unknown size suffix {other:?}: use Ki, Mi, Gi or Ti"
                ));
            }
        },
    };
    let n: u64 = digits.parse().map_err(|e| format!("{value:?}: {e}"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{value:?} is too large"))
}

/// The size to provision for `range`, or why none fits.
pub fn size_for(range: Option<&CapacityRange>, default: u64) -> Result<u64, Error> {
    let (required, limit) = range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
    if required < 0 || limit < 0 {
        return Err(Error::InvalidArgument(
            "capacity_range: required_bytes and limit_bytes must not be negative".into(),
        ));
    }
    let (required, limit) = (required as u64, limit as u64);
    if limit > 0 && required > limit {
        return Err(Error::OutOfRange(format!(
            "capacity_range: required_bytes {required} exceeds limit_bytes {limit}"
        )));
    }
    let want = match (required, limit) {
        (0, 0) => default,
        (0, limit) => default.min(limit),
        (required, _) => required,
    };
    let size = want.max(MIN_VOLUME_BYTES).div_ceil(BLOCK) * BLOCK;
    if limit > 0 && size > limit {
        return Err(Error::OutOfRange(format!(
            "capacity_range: limit_bytes {limit} is below the smallest volume this driver makes \
             ({MIN_VOLUME_BYTES} bytes, whole 4 KiB blocks)"
        )));
    }
    Ok(size)
}

/// Whether a volume of `capacity` bytes satisfies `range`.
fn satisfies(capacity: u64, range: Option<&CapacityRange>) -> bool {
    range.is_none_or(|r| {
        capacity >= r.required_bytes.max(0) as u64
            && (r.limit_bytes <= 0 || capacity <= r.limit_bytes as u64)
    })
}

/// Validated CreateVolume parameters: the backing and the filesystem.
pub fn parse_parameters(
    params: &HashMap<String, String>,
) -> Result<(Backing, String, BTreeMap<String, String>), Error> {
    let mut backing = Backing::Image;
    let mut fs_type = "ext4".to_string();
    for (key, value) in params {
        match key.as_str() {
            "backing" => backing = Backing::parse(value)?,
            "fsType" | "csi.storage.k8s.io/fstype" => match value.as_str() {
                "" | "ext4" => {}
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "parameters.{key} {other:?} is not supported: only ext4"
                    )));
                }
            },
            k if k.starts_with(K8S_PARAM_PREFIX) => {}
            other => {
                return Err(Error::InvalidArgument(format!(
                    "parameters.{other} is not a parameter of this driver (known: backing, fsType)"
                )));
            }
        }
    }
    if backing == Backing::Directory {
        fs_type.clear();
    }
    let kept = params
        .iter()
        .filter(|(k, _)| !k.starts_with(K8S_PARAM_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((backing, fs_type, kept))
}

impl Driver {
    /// Whether `topology` names this node (or does not constrain the node).
    pub(super) fn is_local(&self, segments: &HashMap<String, String>) -> bool {
        segments
            .get(TOPOLOGY_KEY)
            .is_none_or(|node| *node == self.config.node_id)
    }

    fn check_topology(&self, req: Option<&TopologyRequirement>) -> Result<(), Error> {
        let Some(req) = req.filter(|r| !r.requisite.is_empty()) else {
            return Ok(());
        };
        if req.requisite.iter().any(|t| self.is_local(&t.segments)) {
            return Ok(());
        }
        Err(Error::ResourceExhausted(format!(
            "accessibility_requirements.requisite does not include this node ({TOPOLOGY_KEY}={})",
            self.config.node_id
        )))
    }

    /// The CSI view of a record.
    pub(super) fn volume(&self, record: &VolumeRecord) -> Volume {
        Volume {
            capacity_bytes: record.capacity_bytes as i64,
            volume_id: record.id.clone(),
            accessible_topology: vec![self.topology()],
            ..Default::default()
        }
    }

    /// CreateVolume: makes the image file (and filesystem) or directory.
    pub(super) fn create_volume(&self, req: CreateVolumeRequest) -> Result<Volume, Error> {
        if req.name.is_empty() {
            return Err(Error::missing("name"));
        }
        capability::check_all(&req.volume_capabilities, "volume_capabilities")?;
        if req.volume_content_source.is_some() {
            return Err(Error::InvalidArgument(
                "volume_content_source: snapshots and clones are not supported".into(),
            ));
        }
        let (backing, fs_type, parameters) = parse_parameters(&req.parameters)?;
        let range = req.capacity_range.as_ref();
        let size = size_for(range, self.config.default_size_bytes)?;
        self.check_topology(req.accessibility_requirements.as_ref())?;

        let mut volumes = self.lock();
        if let Some(existing) = volumes.values().find(|v| v.name == req.name) {
            if existing.backing == backing
                && existing.parameters == parameters
                && satisfies(existing.capacity_bytes, range)
            {
                return Ok(self.volume(existing));
            }
            return Err(Error::AlreadyExists(format!(
                "volume {:?} exists as {} with {} bytes and parameters {:?}, incompatible with this request",
                req.name, existing.id, existing.capacity_bytes, existing.parameters
            )));
        }
        let available = self.available_bytes(&volumes)?;
        if size > available {
            return Err(Error::ResourceExhausted(format!(
                "node {} has {available} bytes left to provision, {size} requested",
                self.config.node_id
            )));
        }
        let id = volume_id(&req.name);
        if volumes.contains_key(&id) {
            return Err(Error::AlreadyExists(format!(
                "volume ID {id} is taken by another name"
            )));
        }
        match backing {
            Backing::Image => {
                let image = self.dir.image_path(&id);
                let file = std::fs::File::create(&image).map_err(|e| Error::io(&image, e))?;
                file.set_len(size).map_err(|e| Error::io(&image, e))?;
                if let Err(e) = self.mounter.mkfs(&image, &fs_type) {
                    let _ = std::fs::remove_file(&image);
                    return Err(e);
                }
            }
            Backing::Directory => {
                let dir = self.dir.dir_path(&id);
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            }
        }
        let record = VolumeRecord {
            id: id.clone(),
            name: req.name,
            capacity_bytes: size,
            backing,
            fs_type,
            parameters,
            staged: None,
            published: BTreeMap::new(),
            needs_resize: false,
        };
        self.dir.save(&record)?;
        let volume = self.volume(&record);
        volumes.insert(id, record);
        Ok(volume)
    }

    /// DeleteVolume: removes the data; a volume still staged is refused.
    pub(super) fn delete_volume(&self, id: &str) -> Result<(), Error> {
        if id.is_empty() {
            return Err(Error::missing("volume_id"));
        }
        let mut volumes = self.lock();
        let Some(record) = volumes.get(id) else {
            return Ok(());
        };
        if let Some(path) = &record.staged {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is staged at {}: NodeUnstageVolume first",
                path.display()
            )));
        }
        let result = match record.backing {
            Backing::Image => std::fs::remove_file(self.dir.image_path(id)),
            Backing::Directory => std::fs::remove_dir_all(self.dir.dir_path(id)),
        };
        match result {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(self.dir.image_path(id), e));
            }
            _ => {}
        }
        self.dir.remove(id)?;
        volumes.remove(id);
        Ok(())
    }

    /// ControllerExpandVolume: grows the image file, and its filesystem too
    /// when the volume is not staged; a staged volume's filesystem is grown
    /// online by NodeExpandVolume. Returns the new capacity and whether the
    /// node must act.
    pub(super) fn controller_expand(
        &self,
        id: &str,
        range: Option<&CapacityRange>,
    ) -> Result<(u64, bool), Error> {
        if id.is_empty() {
            return Err(Error::missing("volume_id"));
        }
        let range = range.ok_or_else(|| Error::missing("capacity_range"))?;
        let mut volumes = self.lock();
        let available = self.available_bytes(&volumes)?;
        let record = volumes
            .get_mut(id)
            .ok_or_else(|| Error::VolumeNotFound(id.to_string()))?;
        let size = size_for(Some(range), record.capacity_bytes)?;
        let image = record.backing == Backing::Image;
        if size <= record.capacity_bytes {
            return Ok((record.capacity_bytes, image && record.needs_resize));
        }
        let growth = size - record.capacity_bytes;
        if growth > available {
            return Err(Error::ResourceExhausted(format!(
                "node {} has {available} bytes left to provision, growing {id} needs {growth}",
                self.config.node_id
            )));
        }
        let online = image && record.staged.is_some();
        if online && !self.mounter.can_resize_online() {
            return Err(Error::FailedPrecondition(format!(
                "volume {id} is staged and online expansion needs CAP_SYS_RESOURCE, which \
                 cox-csi lacks: unpublish and unstage it, or run cox-csi with CAP_SYS_RESOURCE"
            )));
        }
        if image {
            let path = self.dir.image_path(id);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            file.set_len(size).map_err(|e| Error::io(&path, e))?;
            if !online {
                self.mounter.grow_offline(&path)?;
            }
        }
        let mut updated = record.clone();
        updated.capacity_bytes = size;
        updated.needs_resize = online;
        self.dir.save(&updated)?;
        *record = updated;
        Ok((size, online))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(required: i64, limit: i64) -> CapacityRange {
        CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        }
    }

    #[test]
    fn sizes_round_up_to_blocks_within_the_limit() {
        assert_eq!(size_for(None, 1 << 30).unwrap(), 1 << 30);
        assert_eq!(size_for(Some(&range(16 << 20, 0)), 0).unwrap(), 16 << 20);
        assert_eq!(size_for(Some(&range(5_000_001, 0)), 0).unwrap(), 5_001_216);
        assert_eq!(size_for(Some(&range(1, 0)), 0).unwrap(), MIN_VOLUME_BYTES);
        assert_eq!(
            size_for(Some(&range(0, 8 << 20)), 1 << 30).unwrap(),
            8 << 20
        );
    }

    #[test]
    fn unsatisfiable_ranges_are_out_of_range_and_negative_ones_invalid() {
        let code = |r| size_for(Some(&r), 0).unwrap_err().code();
        assert_eq!(code(range(10 << 20, 5 << 20)), tonic::Code::OutOfRange);
        assert_eq!(code(range(0, 4096)), tonic::Code::OutOfRange);
        assert_eq!(code(range(-1, 0)), tonic::Code::InvalidArgument);
    }

    #[test]
    fn parameters_are_checked_by_name() {
        let params = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let (backing, fs, kept) = parse_parameters(&params(&[
            ("backing", "directory"),
            ("csi.storage.k8s.io/pvc/name", "x"),
        ]))
        .unwrap();
        assert_eq!(
            (backing, fs.as_str(), kept.len()),
            (Backing::Directory, "", 1)
        );
        let err = parse_parameters(&params(&[("colour", "blue")])).unwrap_err();
        assert!(err.to_string().contains("parameters.colour"), "{err}");
        assert!(parse_parameters(&params(&[("fsType", "xfs")])).is_err());
    }
}
