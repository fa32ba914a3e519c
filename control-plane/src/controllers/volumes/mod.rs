//! The volume controller: binds PersistentVolumeClaims to PersistentVolumes, protects both
//! from deletion while in use and releases volumes whose claims are gone, as Kubernetes'
//! persistent-volume and protection controllers do.
//!
//! Provisioning itself happens on the nodes: each node agent runs the CSI external
//! provisioner's part for its node's drivers (`--node-deployment`), learns its work through
//! the node service's WatchVolumes and reports back (see `nodeservice::volumes`). This
//! controller only binds the PersistentVolume the node service creates from that report.
//!
//! - [`claim`]: one claim: its protection finalizer, binding, the reason it waits.
//! - [`volume`]: one volume: its protection finalizer and its phase (Available, Bound,
//!   Released).
//! - [`matching`]: which volume a claim binds to.
//! - [`bind`]: the four writes of a binding, in Kubernetes' order.

pub mod bind;
pub mod claim;
pub mod matching;
pub mod volume;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::Api;
use kube::runtime::controller::Action;

use super::work_queue::WorkQueue;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use super::{ControllersConfig, Error};

/// The component named in the events this controller records.
pub const COMPONENT: &str = "persistentvolume-controller";
/// Held on every claim until it is deleted and no running pod uses it.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// Held on every volume until it is no longer bound.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
/// On a bound claim: the controller finished binding it.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On a claim or volume whose binding the controller (not a user) chose.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On a provisioned volume: the CSI driver that made it.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// On a claim: the node the scheduler chose, whose agent provisions the volume.
pub const SELECTED_NODE: &str = coxswain_api::csi_names::SELECTED_NODE_ANNOTATION;
/// On a claim waiting for a provisioner: which one (its class's provisioner).
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// On a Node: JSON object `{driverName: nodeID}` of the CSI drivers the node runs.
pub const CSI_NODE_ID: &str = coxswain_api::csi_names::CSI_NODE_ID_ANNOTATION;
/// The StorageClass parameters naming the filesystem of a provisioned volume.
pub const FS_TYPE_PARAMETERS: &[&str] = &[coxswain_api::csi_names::FSTYPE_PARAMETER, "fsType"];
/// How often a claim still waiting for a volume, or a volume waiting for its claim, is
/// looked at again even when nothing it watches changed (a new unrelated volume).
pub const PENDING_RESYNC: Duration = Duration::from_secs(5);

pub use super::Context;

/// Runs the claim and volume loops until `shutdown` is cancelled.
pub async fn run(client: kube::Client, config: ControllersConfig, shutdown: CancellationToken) {
    let claim_queue = WorkQueue::new("persistentvolumeclaim", config.metrics.as_ref());
    let volume_queue = WorkQueue::new("persistentvolume", config.metrics.as_ref());
    let context = Arc::new(Context::new(client.clone(), config, COMPONENT));
    let claims = claim_queue
        .controller(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
            claim_queue.mapper(claim_of_volume),
        )
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            claim_queue.mapper(claims_of_pod),
        )
        .graceful_shutdown_on(cancelled(shutdown.clone()))
        .run(
            claim_queue.reconciler(claim::reconcile),
            claim::error_policy,
            context.clone(),
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "claim controller");
            }
        });
    let volumes = volume_queue
        .controller(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches(
            Api::<PersistentVolumeClaim>::all(client),
            watcher::Config::default(),
            volume_queue.mapper(volumes_of_claim),
        )
        .graceful_shutdown_on(cancelled(shutdown))
        .run(
            volume_queue.reconciler(volume::reconcile),
            volume::error_policy,
            context,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "volume controller");
            }
        });
    tokio::join!(claims, volumes);
}

async fn cancelled(shutdown: CancellationToken) {
    shutdown.cancelled().await
}

/// The claim a volume's claimRef names.
fn claim_of_volume(volume: PersistentVolume) -> Option<ObjectRef<PersistentVolumeClaim>> {
    let reference = volume.spec?.claim_ref?;
    Some(ObjectRef::new(reference.name.as_deref()?).within(reference.namespace.as_deref()?))
}

/// The claims a pod's volumes use.
fn claims_of_pod(pod: Pod) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    crate::nodeservice::pods::claim_references(&pod)
        .into_iter()
        .map(|name| ObjectRef::new(&name).within(&namespace))
        .collect()
}

/// The volumes a claim may be bound to: its spec.volumeName and the one provisioned for it.
fn volumes_of_claim(claim: PersistentVolumeClaim) -> Vec<ObjectRef<PersistentVolume>> {
    let mut out = Vec::new();
    if let Some(name) = claim
        .spec
        .and_then(|s| s.volume_name)
        .filter(|n| !n.is_empty())
    {
        out.push(ObjectRef::new(&name));
    }
    if let Some(uid) = claim.metadata.uid {
        out.push(ObjectRef::new(&provisioned_name(&uid)));
    }
    out
}

pub use coxswain_api::csi_names::provisioned_volume_name as provisioned_name;

/// Whether `finalizers` holds `finalizer`.
fn has_finalizer(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    finalizer: &str,
) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

/// The back-off after a failed reconcile of `object`.
fn backoff(object: &impl kube::ResourceExt, error: &Error, ctx: &Context) -> Action {
    let wait = ctx.config.error_backoff(ctx.failures.record(object));
    tracing::warn!(object = %super::object_key(object), %error, retry_in = ?wait, "reconciling a volume or claim failed");
    Action::requeue(wait)
}
