//! Which PersistentVolume a claim binds to, as Kubernetes' `findMatchingVolume`: a volume
//! pre-bound to the claim first, else the smallest Available volume of the claim's class
//! whose access modes include the claim's, whose volume mode is the claim's and whose
//! capacity covers the request.

use coxswain_api::quantity::ParsedQuantity;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

/// The storage a claim requests, in bytes (0 when missing or malformed).
pub fn requested_bytes(claim: &PersistentVolumeClaim) -> i128 {
    let requests = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref());
    requests
        .and_then(|r| r.get("storage"))
        .and_then(|q| ParsedQuantity::parse(&q.0).ok())
        .map_or(0, |q| q.ceil_units())
}

/// The capacity of a volume, in bytes (0 when missing or malformed).
pub fn capacity_bytes(volume: &PersistentVolume) -> i128 {
    let capacity = volume.spec.as_ref().and_then(|s| s.capacity.as_ref());
    capacity
        .and_then(|c| c.get("storage"))
        .and_then(|q| ParsedQuantity::parse(&q.0).ok())
        .map_or(0, |q| q.ceil_units())
}

/// The claim's class name ("" when it names none).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    let spec = claim.spec.as_ref();
    spec.and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The volume's class name ("" when it names none).
pub fn volume_class(volume: &PersistentVolume) -> &str {
    let spec = volume.spec.as_ref();
    spec.and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// Whether `volume`'s claimRef names `claim` (namespace, name, and uid when the ref has one).
pub fn is_pre_bound_to(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(reference) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    reference.namespace == claim.metadata.namespace
        && reference.name == claim.metadata.name
        && reference
            .uid
            .as_ref()
            .is_none_or(|uid| Some(uid) == claim.metadata.uid.as_ref())
}

/// Whether `volume` can serve `claim`: class, access modes, volume mode and capacity.
pub fn fits(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let (Some(spec), Some(claim_spec)) = (volume.spec.as_ref(), claim.spec.as_ref()) else {
        return false;
    };
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    let wanted = claim_spec.access_modes.as_deref().unwrap_or_default();
    let volume_mode = spec.volume_mode.as_deref().unwrap_or("Filesystem");
    let claim_mode = claim_spec.volume_mode.as_deref().unwrap_or("Filesystem");
    volume_class(volume) == claim_class(claim)
        && wanted.iter().all(|m| modes.contains(m))
        && volume_mode == claim_mode
        && capacity_bytes(volume) >= requested_bytes(claim)
}

/// Whether `volume` is free to bind: not being deleted, phase Available (or not yet set)
/// and no claimRef.
fn is_available(volume: &PersistentVolume) -> bool {
    let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref());
    volume.metadata.deletion_timestamp.is_none()
        && matches!(phase, None | Some("Available") | Some("Pending"))
        && volume.spec.as_ref().is_some_and(|s| s.claim_ref.is_none())
}

/// The volume `claim` should bind to among `volumes`: one pre-bound to it that fits, else
/// the smallest available one that fits.
pub fn find<'a>(
    claim: &PersistentVolumeClaim,
    volumes: &'a [PersistentVolume],
) -> Option<&'a PersistentVolume> {
    let live = || {
        volumes
            .iter()
            .filter(|v| v.metadata.deletion_timestamp.is_none())
    };
    if let Some(volume) = live().find(|v| is_pre_bound_to(v, claim) && fits(v, claim)) {
        return Some(volume);
    }
    live()
        .filter(|v| is_available(v) && fits(v, claim))
        .min_by_key(|v| (capacity_bytes(v), v.metadata.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn volume(name: &str, size: &str, class: &str, modes: &[&str]) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": modes, "storageClassName": class},
            "status": {"phase": "Available"},
        }))
        .unwrap()
    }

    fn claim(size: &str, class: &str, modes: &[&str]) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "u1"},
            "spec": {
                "accessModes": modes,
                "storageClassName": class,
                "resources": {"requests": {"storage": size}},
            },
        }))
        .unwrap()
    }

    #[test]
    fn the_smallest_fitting_volume_of_the_class_wins() {
        let volumes = [
            volume("big", "10Gi", "fast", &["ReadWriteOnce"]),
            volume("small", "2Gi", "fast", &["ReadWriteOnce"]),
            volume("tiny", "1Gi", "fast", &["ReadWriteOnce"]),
            volume("other-class", "2Gi", "slow", &["ReadWriteOnce"]),
            volume("read-only", "2Gi", "fast", &["ReadOnlyMany"]),
        ];
        let chosen = find(&claim("1500Mi", "fast", &["ReadWriteOnce"]), &volumes);
        assert_eq!(
            chosen.and_then(|v| v.metadata.name.as_deref()),
            Some("small")
        );
        assert!(find(&claim("20Gi", "fast", &["ReadWriteOnce"]), &volumes).is_none());
        assert!(find(&claim("1Gi", "fast", &["ReadWriteMany"]), &volumes).is_none());
    }

    #[test]
    fn a_volume_pre_bound_to_the_claim_wins_and_one_bound_elsewhere_is_skipped() {
        let mut mine = volume("mine", "10Gi", "fast", &["ReadWriteOnce"]);
        mine.spec.as_mut().unwrap().claim_ref = Some(
            serde_json::from_value(json!({"namespace": "default", "name": "data", "uid": "u1"}))
                .unwrap(),
        );
        let mut theirs = volume("theirs", "1Gi", "fast", &["ReadWriteOnce"]);
        theirs.spec.as_mut().unwrap().claim_ref =
            Some(serde_json::from_value(json!({"namespace": "default", "name": "other"})).unwrap());
        let volumes = [
            theirs,
            mine,
            volume("free", "1Gi", "fast", &["ReadWriteOnce"]),
        ];
        let chosen = find(&claim("1Gi", "fast", &["ReadWriteOnce"]), &volumes);
        assert_eq!(
            chosen.and_then(|v| v.metadata.name.as_deref()),
            Some("mine")
        );
    }
}
