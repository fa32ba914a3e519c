//! One volume: the `kubernetes.io/pv-protection` finalizer and its phase. A volume with no
//! claim is Available; one whose claim points back is Bound; one whose claim is gone (or
//! was replaced by a new claim of the same name) is Released. A Released volume with
//! reclaim policy `Retain` stays so; with `Delete` the agent of the node it was provisioned
//! on deletes it (WatchVolumes' DELETE) and reports back, and the node service deletes
//! the object. A `Delete` volume no provisioner made cannot be deleted: it is Failed.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, PersistentVolumeStatus};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::super::Error;
use super::{
    BOUND_BY_CONTROLLER, Context, PENDING_RESYNC, PROVISIONED_BY, PV_PROTECTION, has_finalizer,
};
use crate::nodeservice::cas::{Part, modify};

/// Brings one volume in line: finalizer and phase.
pub async fn reconcile(volume: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action, Error> {
    let result = reconcile_volume(&volume, &ctx).await;
    if result.is_ok() {
        ctx.failures.reset(volume.as_ref());
    }
    result
}

/// Retries a volume whose reconcile failed after a back-off.
pub fn error_policy(volume: Arc<PersistentVolume>, error: &Error, ctx: Arc<Context>) -> Action {
    super::backoff(volume.as_ref(), error, &ctx)
}

/// The reclaim policy of `volume` (`Retain` when unset, as Kubernetes' default for
/// volumes made by hand).
pub fn reclaim_policy(volume: &PersistentVolume) -> &str {
    let spec = volume.spec.as_ref();
    spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain")
}

/// The phase of `volume` ("" when unset).
pub fn phase(volume: &PersistentVolume) -> &str {
    volume
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

async fn reconcile_volume(cached: &PersistentVolume, ctx: &Context) -> Result<Action, Error> {
    let name = cached.name_any();
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let Some(volume) = volumes
        .get_opt(&name)
        .await
        .map_err(Error::api(format!("reading volume {name}")))?
    else {
        return Ok(Action::await_change());
    };
    if volume.metadata.deletion_timestamp.is_some() {
        // Judged on the claim as it is now: a volume whose claim just went is no longer bound.
        let (desired, _) = desired_phase(ctx, &volume).await?;
        let bound = desired.map_or(phase(&volume) == "Bound", |p| p == "Bound");
        if has_finalizer(&volume.metadata, PV_PROTECTION) && !bound {
            set_finalizer(&volumes, &name, false)
                .await
                .map_err(Error::api(format!("unprotecting volume {name}")))?;
        }
        return Ok(Action::await_change());
    }
    let volume = if has_finalizer(&volume.metadata, PV_PROTECTION) {
        volume
    } else {
        match set_finalizer(&volumes, &name, true)
            .await
            .map_err(Error::api(format!("protecting volume {name}")))?
        {
            Some(volume) => volume,
            None => return Ok(Action::await_change()),
        }
    };
    let (phase, message) = desired_phase(ctx, &volume).await?;
    let Some(phase) = phase else {
        return Ok(Action::requeue(PENDING_RESYNC));
    };
    if phase == "Available"
        && volume
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| r.uid.is_some())
    {
        // Bound by the controller to a claim that went away before it completed: free it.
        if volume.annotations().contains_key(BOUND_BY_CONTROLLER) {
            modify(&volumes, &name, Part::Object, |v| {
                let spec = v.spec.get_or_insert_with(Default::default);
                spec.claim_ref.take().is_some()
            })
            .await
            .map_err(Error::api(format!("unbinding volume {name}")))?;
        }
    }
    modify(&volumes, &name, Part::Status, |v| {
        let status = v.status.get_or_insert_with(PersistentVolumeStatus::default);
        if status.phase.as_deref() == Some(phase) && status.message == message {
            return false;
        }
        status.phase = Some(phase.to_string());
        status.message = message.clone();
        true
    })
    .await
    .map_err(Error::api(format!("writing the phase of volume {name}")))?;
    Ok(match phase {
        "Available" => Action::requeue(PENDING_RESYNC),
        _ => Action::await_change(),
    })
}

/// The phase `volume` should have and its message; `None` to leave it as it is for now.
async fn desired_phase(
    ctx: &Context,
    volume: &PersistentVolume,
) -> Result<(Option<&'static str>, Option<String>), Error> {
    let current = phase(volume);
    if current == "Failed" {
        return Ok((None, None));
    }
    let Some(reference) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return Ok((Some("Available"), None));
    };
    let (Some(namespace), Some(claim_name)) =
        (reference.namespace.as_deref(), reference.name.as_deref())
    else {
        return Ok((Some("Available"), None));
    };
    let Some(uid) = reference.uid.as_deref() else {
        // Pre-bound by a user to a claim that does not exist yet: the claim binds it.
        return Ok((Some("Available"), None));
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    let claim = claims
        .get_opt(claim_name)
        .await
        .map_err(Error::api(format!(
            "reading claim {namespace}/{claim_name}"
        )))?;
    let claim = claim.filter(|c| c.metadata.uid.as_deref() == Some(uid));
    let Some(claim) = claim else {
        // The claim is gone (or replaced): released to its reclaim policy.
        let released = match reclaim_policy(volume) {
            "Delete" if !volume.annotations().contains_key(PROVISIONED_BY) => {
                return Ok((
                    Some("Failed"),
                    Some("no deleter for a volume no provisioner made".to_string()),
                ));
            }
            _ => "Released",
        };
        return Ok((Some(released), None));
    };
    let claim_volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default();
    let name = volume.name_any();
    if claim_volume == name {
        return Ok((Some("Bound"), None));
    }
    if claim_volume.is_empty() {
        // The claim binds it (the claim controller is woken by this volume).
        return Ok((
            if current.is_empty() {
                Some("Available")
            } else {
                None
            },
            None,
        ));
    }
    // The claim was bound to another volume meanwhile: a volume made for it is released to
    // its reclaim policy (as the claim was gone); one the controller chose is freed.
    if volume.annotations().contains_key(PROVISIONED_BY) {
        return Ok((Some("Released"), None));
    }
    Ok((Some("Available"), None))
}

/// Adds (`true`) or removes the protection finalizer.
async fn set_finalizer(
    volumes: &Api<PersistentVolume>,
    name: &str,
    present: bool,
) -> Result<Option<PersistentVolume>, kube::Error> {
    modify(volumes, name, Part::Object, |v| {
        let finalizers = v.finalizers_mut();
        let has = finalizers.iter().any(|f| f == PV_PROTECTION);
        match (has, present) {
            (false, true) => finalizers.push(PV_PROTECTION.to_string()),
            (true, false) => finalizers.retain(|f| f != PV_PROTECTION),
            _ => return false,
        }
        true
    })
    .await
}
