//! One claim: the `kubernetes.io/pvc-protection` finalizer, binding to a volume, and the
//! reason it waits when no volume fits (no class, an unknown class, a provisioner to come).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimCondition,
    PersistentVolumeClaimStatus, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;

use super::super::Error;
use super::{
    Context, PENDING_RESYNC, PVC_PROTECTION, SELECTED_NODE, STORAGE_PROVISIONER, bind,
    has_finalizer, matching,
};
use crate::events::EventType;
use crate::nodeservice::cas::{Part, modify};

/// The condition a claim carries while its provisioning fails: status False, reason
/// `ProvisioningFailed` (or `StorageClassNotFound`), the message of the failure.
pub const PROVISIONED_CONDITION: &str = "Provisioned";

/// Brings one claim in line: finalizer, binding, or the reason it waits.
pub async fn reconcile(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let result = reconcile_claim(&claim, &ctx).await;
    if result.is_ok() {
        ctx.failures.reset(claim.as_ref());
    }
    result
}

/// Retries a claim whose reconcile failed after a back-off.
pub fn error_policy(claim: Arc<PersistentVolumeClaim>, error: &Error, ctx: Arc<Context>) -> Action {
    super::backoff(claim.as_ref(), error, &ctx)
}

async fn reconcile_claim(cached: &PersistentVolumeClaim, ctx: &Context) -> Result<Action, Error> {
    let namespace = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let action = format!("claim {namespace}/{name}");
    let Some(claim) = claims
        .get_opt(&name)
        .await
        .map_err(Error::api(format!("reading {action}")))?
    else {
        return Ok(Action::await_change());
    };
    if claim.metadata.deletion_timestamp.is_some() {
        if has_finalizer(&claim.metadata, PVC_PROTECTION) && !in_use(ctx, &claim).await? {
            set_finalizer(&claims, &name, false)
                .await
                .map_err(Error::api(format!("unprotecting {action}")))?;
        }
        return Ok(Action::await_change());
    }
    let claim = if has_finalizer(&claim.metadata, PVC_PROTECTION) {
        claim
    } else {
        match set_finalizer(&claims, &name, true)
            .await
            .map_err(Error::api(format!("protecting {action}")))?
        {
            Some(claim) => claim,
            None => return Ok(Action::await_change()),
        }
    };
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let named = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty());
    if let Some(volume_name) = named {
        return bind_named(ctx, &claim, &volumes, &volume_name).await;
    }
    let all = volumes
        .list(&ListParams::default())
        .await
        .map_err(Error::api("listing volumes"))?;
    if let Some(volume) = matching::find(&claim, &all.items) {
        bind::bind(&ctx.client, volume, &claim, true).await?;
        return Ok(Action::await_change());
    }
    wait_for_volume(ctx, &claims, &claim).await?;
    Ok(Action::requeue(PENDING_RESYNC))
}

/// A claim that names its volume: bind when the volume is free or already points back.
async fn bind_named(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    volumes: &Api<PersistentVolume>,
    volume_name: &str,
) -> Result<Action, Error> {
    let Some(volume) = volumes
        .get_opt(volume_name)
        .await
        .map_err(Error::api(format!("reading volume {volume_name}")))?
    else {
        let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if bound {
            set_phase_lost(ctx, claim).await?;
            ctx.events
                .publish(
                    claim,
                    EventType::Warning,
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                )
                .await;
        }
        return Ok(Action::requeue(PENDING_RESYNC));
    };
    let free = volume.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
    if free || matching::is_pre_bound_to(&volume, claim) {
        bind::bind(&ctx.client, &volume, claim, false).await?;
        return Ok(Action::await_change());
    }
    let message = format!("volume \"{volume_name}\" already bound to a different claim.");
    ctx.events
        .publish(claim, EventType::Warning, "FailedBinding", &message)
        .await;
    Ok(Action::requeue(PENDING_RESYNC))
}

async fn set_phase_lost(ctx: &Context, claim: &PersistentVolumeClaim) -> Result<(), Error> {
    let namespace = claim.namespace().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    modify(&claims, &claim.name_any(), Part::Status, |c| {
        let status = c
            .status
            .get_or_insert_with(PersistentVolumeClaimStatus::default);
        if status.phase.as_deref() == Some("Lost") {
            return false;
        }
        status.phase = Some("Lost".to_string());
        true
    })
    .await
    .map_err(Error::api(format!(
        "marking claim {namespace}/{} lost",
        claim.name_any()
    )))?;
    Ok(())
}

/// No volume fits: say why the claim waits (no class, an unknown class, or a provisioner
/// to come once a node is chosen).
async fn wait_for_volume(
    ctx: &Context,
    claims: &Api<PersistentVolumeClaim>,
    claim: &PersistentVolumeClaim,
) -> Result<(), Error> {
    let class_name = matching::claim_class(claim);
    if class_name.is_empty() {
        let message = "no persistent volumes available for this claim and no storage class is set";
        ctx.events
            .publish(claim, EventType::Normal, "FailedBinding", message)
            .await;
        return Ok(());
    }
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let class = classes
        .get_opt(class_name)
        .await
        .map_err(Error::api(format!("reading storage class {class_name}")))?;
    let Some(class) = class else {
        let message = format!("storageclass.storage.k8s.io \"{class_name}\" not found");
        ctx.events
            .publish(claim, EventType::Warning, "ProvisioningFailed", &message)
            .await;
        set_provisioning_failed(claims, &claim.name_any(), "StorageClassNotFound", &message)
            .await
            .map_err(Error::api(format!(
                "recording why claim {} waits",
                claim.name_any()
            )))?;
        return Ok(());
    };
    let provisioner = class.provisioner.clone();
    let selected = match claim.annotations().get(SELECTED_NODE) {
        Some(node) => Some(node.clone()),
        None => consumer_node(ctx, claim, &provisioner).await?,
    };
    let changed = modify(claims, &claim.name_any(), Part::Object, |c| {
        let annotations = c.annotations_mut();
        if annotations.get(STORAGE_PROVISIONER) == Some(&provisioner)
            && annotations.get(SELECTED_NODE) == selected.as_ref()
        {
            return false;
        }
        annotations.insert(STORAGE_PROVISIONER.to_string(), provisioner.clone());
        annotations.insert(
            "volume.beta.kubernetes.io/storage-provisioner".to_string(),
            provisioner.clone(),
        );
        if let Some(node) = &selected {
            annotations.insert(SELECTED_NODE.to_string(), node.clone());
        }
        true
    })
    .await
    .map_err(Error::api(format!("annotating claim {}", claim.name_any())))?;
    let was_annotated = claim.annotations().get(STORAGE_PROVISIONER) == Some(&provisioner)
        && claim.annotations().get(SELECTED_NODE) == selected.as_ref();
    if changed.is_some() && !was_annotated {
        let (reason, message) = if selected.is_some() {
            (
                "ExternalProvisioning",
                format!(
                    "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
                ),
            )
        } else {
            (
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".to_string(),
            )
        };
        ctx.events
            .publish(claim, EventType::Normal, reason, &message)
            .await;
    }
    Ok(())
}

/// Records on `name`'s status why its provisioning failed (the [`PROVISIONED_CONDITION`]
/// condition, status False).
pub async fn set_provisioning_failed(
    claims: &Api<PersistentVolumeClaim>,
    name: &str,
    reason: &str,
    message: &str,
) -> Result<(), kube::Error> {
    modify(claims, name, Part::Status, |c| {
        let status = c
            .status
            .get_or_insert_with(PersistentVolumeClaimStatus::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        if conditions.iter().any(|c| {
            c.type_ == PROVISIONED_CONDITION
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message)
        }) {
            return false;
        }
        conditions.retain(|c| c.type_ != PROVISIONED_CONDITION);
        conditions.push(PersistentVolumeClaimCondition {
            type_: PROVISIONED_CONDITION.to_string(),
            status: "False".to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_transition_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
            ..PersistentVolumeClaimCondition::default()
        });
        if status.phase.is_none() {
            status.phase = Some("Pending".to_string());
        }
        true
    })
    .await?;
    Ok(())
}

/// Adds (`true`) or removes the protection finalizer.
async fn set_finalizer(
    claims: &Api<PersistentVolumeClaim>,
    name: &str,
    present: bool,
) -> Result<Option<PersistentVolumeClaim>, kube::Error> {
    modify(claims, name, Part::Object, |c| {
        let finalizers = c.finalizers_mut();
        let has = finalizers.iter().any(|f| f == PVC_PROTECTION);
        match (has, present) {
            (false, true) => finalizers.push(PVC_PROTECTION.to_string()),
            (true, false) => finalizers.retain(|f| f != PVC_PROTECTION),
            _ => return false,
        }
        true
    })
    .await
}

/// Whether a pod that has not finished (phase other than Succeeded or Failed) uses `claim`.
async fn in_use(ctx: &Context, claim: &PersistentVolumeClaim) -> Result<bool, Error> {
    Ok(!consumers(ctx, claim).await?.is_empty())
}

/// The pods that use `claim` and have not finished (phase other than Succeeded or Failed).
async fn consumers(ctx: &Context, claim: &PersistentVolumeClaim) -> Result<Vec<Pod>, Error> {
    let namespace = claim.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let list = pods
        .list(&ListParams::default())
        .await
        .map_err(Error::api(format!(
            "listing the pods of namespace {namespace}"
        )))?;
    let name = claim.name_any();
    Ok(list
        .items
        .into_iter()
        .filter(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded") | Some("Failed"))
                && crate::nodeservice::pods::claim_references(pod).contains(&name)
        })
        .collect())
}

/// The node a consumer of `claim` was bound to, when the scheduler has not chosen one for
/// the claim (`volume.kubernetes.io/selected-node` unset): the volume follows the pod to
/// its node. A node that does not run `provisioner` is reported on the claim.
async fn consumer_node(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    provisioner: &str,
) -> Result<Option<String>, Error> {
    let bound = consumers(ctx, claim)
        .await?
        .into_iter()
        .find_map(|pod| pod.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()));
    let Some(node) = bound else {
        return Ok(None);
    };
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let stored = nodes
        .get_opt(&node)
        .await
        .map_err(Error::api(format!("reading node {node}")))?;
    let announced =
        stored.is_some_and(|n| crate::nodeservice::volumes::node_drivers(&n).contains(provisioner));
    if !announced {
        let message =
            format!("node {node:?} of the claim's pod does not run CSI driver {provisioner:?}");
        ctx.events
            .publish(claim, EventType::Warning, "ProvisioningFailed", &message)
            .await;
        return Ok(None);
    }
    Ok(Some(node))
}
