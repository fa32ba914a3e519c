//! Binding a claim to a volume in Kubernetes' order: the volume's claimRef, the volume's
//! phase, the claim's volumeName and annotations, the claim's phase, capacity and access
//! modes. Each write is a compare-and-swap, so a crash between two leaves a state the next
//! reconcile finishes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus,
};
use kube::ResourceExt;
use kube::api::Api;

use super::super::Error;
use super::{BIND_COMPLETED, BOUND_BY_CONTROLLER};
use crate::nodeservice::cas::{Part, modify};

/// The claimRef a volume bound to `claim` carries.
pub fn claim_ref(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("PersistentVolumeClaim".to_string()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Binds `claim` to `volume`; `chosen` says the controller picked the volume (the claim did
/// not name it), which it records in the `bound-by-controller` annotations.
pub async fn bind(
    client: &kube::Client,
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
    chosen: bool,
) -> Result<(), Error> {
    let volume_name = volume.name_any();
    let namespace = claim.namespace().unwrap_or_default();
    let claim_name = claim.name_any();
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let reference = claim_ref(claim);
    let pre_bound = volume
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some();
    let action = format!("binding volume {volume_name} to claim {namespace}/{claim_name}");
    let written = modify(&volumes, &volume_name, Part::Object, |v| {
        let spec = v.spec.get_or_insert_with(Default::default);
        let current = spec.claim_ref.as_ref();
        let same = current.is_some_and(|r| {
            r.namespace == reference.namespace && r.name == reference.name && r.uid == reference.uid
        });
        if same {
            return false;
        }
        spec.claim_ref = Some(reference.clone());
        if !pre_bound {
            v.annotations_mut()
                .insert(BOUND_BY_CONTROLLER.to_string(), "yes".to_string());
        }
        true
    })
    .await
    .map_err(Error::api(action.clone()))?;
    let Some(volume) = written else {
        return Ok(());
    };
    modify(&volumes, &volume_name, Part::Status, |v| {
        let status = v.status.get_or_insert_with(PersistentVolumeStatus::default);
        if status.phase.as_deref() == Some("Bound") {
            return false;
        }
        status.phase = Some("Bound".to_string());
        status.message = None;
        status.reason = None;
        true
    })
    .await
    .map_err(Error::api(action.clone()))?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    modify(&claims, &claim_name, Part::Object, |c| {
        let completed = c.annotations().contains_key(BIND_COMPLETED);
        let spec = c.spec.get_or_insert_with(Default::default);
        let named = spec.volume_name.as_deref() == Some(volume_name.as_str());
        if named && completed {
            return false;
        }
        spec.volume_name = Some(volume_name.clone());
        if chosen {
            c.annotations_mut()
                .insert(BOUND_BY_CONTROLLER.to_string(), "yes".to_string());
        }
        c.annotations_mut()
            .insert(BIND_COMPLETED.to_string(), "yes".to_string());
        true
    })
    .await
    .map_err(Error::api(action.clone()))?;
    let vspec = volume.spec.clone().unwrap_or_default();
    modify(&claims, &claim_name, Part::Status, |c| {
        let status = c
            .status
            .get_or_insert_with(PersistentVolumeClaimStatus::default);
        let capacity = vspec.capacity.clone().map(|c| {
            c.into_iter()
                .filter(|(k, _)| k == "storage")
                .collect::<BTreeMap<_, _>>()
        });
        let conditions: Option<Vec<_>> = status.conditions.as_ref().map(|all| {
            all.iter()
                .filter(|c| c.type_ != super::claim::PROVISIONED_CONDITION)
                .cloned()
                .collect()
        });
        let conditions = conditions.filter(|c| !c.is_empty());
        if status.phase.as_deref() == Some("Bound")
            && status.capacity == capacity
            && status.access_modes == vspec.access_modes
            && status.conditions == conditions
        {
            return false;
        }
        status.phase = Some("Bound".to_string());
        status.capacity = capacity.clone();
        status.access_modes = vspec.access_modes.clone();
        status.conditions = conditions;
        true
    })
    .await
    .map_err(Error::api(action))?;
    Ok(())
}
