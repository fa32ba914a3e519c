//! The apps/v1 DaemonSet controller: one pod per node that matches the pod template's
//! `nodeSelector`, required node affinity and tolerations.
//!
//! Pods are placed by setting `spec.nodeName` directly (the DaemonSet controller of
//! Kubernetes before 1.12 did this; newer ones add a `matchFields metadata.name` node
//! affinity and let the scheduler bind). coxswain's scheduler does not read `matchFields`,
//! and binding directly works without a scheduler; the cost is that daemon pods asking for
//! GPUs get no device allocation from the scheduler. A `RollingUpdate` replaces pods whose
//! `controller-revision-hash` is old, at most `maxUnavailable` at a time; `OnDelete`
//! replaces them only when deleted.

pub mod placement;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::deployment::hash::template_hash;
use super::deployment::rolling::scaled_value;
use super::error::ApiContext;
use super::owned::{create_pod, delete, list_owned, owner_ref, pod_from_template};
use super::runner::{controller_of, drive};
use super::selector::{self, is_active, is_available, is_ready};
use super::{Context, Error};
use crate::controllers::work_queue::WorkQueue;
use crate::events::EventType;
use placement::{default_tolerations, should_run};

/// Label with the hash of the template a daemon pod was made from.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";

/// Runs the DaemonSet controller until `shutdown` is cancelled; every node change
/// reconciles every DaemonSet.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let queue = WorkQueue::new("daemonset", ctx.config.metrics.as_ref());
    let controller = queue.controller(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let controller = controller
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            queue.mapper(controller_of::<DaemonSet, Pod>),
        )
        .watches(
            Api::<Node>::all(client),
            watcher::Config::default(),
            queue.mapper(move |_node: Node| {
                store
                    .state()
                    .into_iter()
                    .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                    .collect::<Vec<_>>()
            }),
        );
    drive(queue, controller, reconcile, ctx, shutdown).await;
}

/// Deletes one of the DaemonSet's pods and records it.
async fn delete_pod(ctx: &Context, ds: &DaemonSet, pod: &Pod) -> Result<(), Error> {
    delete(&ctx.client, pod, &Default::default()).await?;
    let message = format!(
        "Deleted pod: {}",
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    ctx.events
        .daemonset
        .publish(ds, EventType::Normal, "SuccessfulDelete", &message)
        .await;
    Ok(())
}

fn node_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH)
        .map(String::as_str)
}

/// One step of a DaemonSet towards one current pod per matching node, then its status.
pub async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = &ds.spec;
    let client = &ctx.client;
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let object = format!("{ns}/{name}");
    let now = ctx.now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let Some(pod_spec) = spec.template.spec.clone() else {
        return Err(Error::InvalidSpec {
            object,
            field: "spec.template.spec".into(),
            message: "required to create pods".into(),
        });
    };
    let hash = template_hash(&spec.template, 0);
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .ctx(|| format!("listing nodes for daemonset {object}"))?
        .items;
    let pods: Vec<Pod> = list_owned(client, &ns, Some(&spec.selector), &uid).await?;

    // Failed daemon pods are deleted and made again.
    for pod in pods
        .iter()
        .filter(|p| selector::phase(p) == "Failed" && !selector::is_deleting(p))
    {
        delete_pod(&ctx, &ds, pod).await?;
    }
    let mut by_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in pods.into_iter().filter(is_active) {
        by_node
            .entry(node_of(&pod).to_string())
            .or_default()
            .push(pod);
    }
    let mut desired: BTreeMap<String, Option<Pod>> = BTreeMap::new();
    let mut misscheduled = 0;
    for node in &nodes {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        let mut here = by_node.remove(&node_name).unwrap_or_default();
        if !should_run(&pod_spec, node) {
            misscheduled += i32::from(!here.is_empty());
            for pod in &here {
                delete_pod(&ctx, &ds, pod).await?;
            }
            continue;
        }
        // Keep the best pod (current revision, then ready); delete duplicates.
        here.sort_by_key(|p| (revision_of(p) != Some(hash.as_str()), !is_ready(p)));
        let mut here = here.into_iter();
        let keep = here.next();
        for extra in here {
            delete_pod(&ctx, &ds, &extra).await?;
        }
        desired.insert(node_name, keep);
    }
    // Pods on nodes that no longer exist.
    for pod in by_node.into_values().flatten() {
        delete_pod(&ctx, &ds, &pod).await?;
    }

    // Rolling update: old pods go, unavailable ones first, at most maxUnavailable at once.
    let rolling = spec
        .update_strategy
        .as_ref()
        .is_none_or(|s| s.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate");
    if rolling {
        let max_unavailable = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.clone())
            .unwrap_or(IntOrString::Int(1));
        let max_unavailable = scaled_value(
            &max_unavailable,
            desired.len() as i32,
            true,
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
        )
        .map_err(|message| Error::InvalidSpec {
            object: object.clone(),
            field: "spec.updateStrategy.rollingUpdate.maxUnavailable".into(),
            message,
        })?
        .max(1);
        let mut unavailable = desired
            .values()
            .filter(|p| p.as_ref().is_none_or(|p| !is_available(p, min_ready, now)))
            .count() as i32;
        for slot in desired.values_mut() {
            let Some(pod) = slot.as_ref() else { continue };
            if revision_of(pod) == Some(hash.as_str()) {
                continue;
            }
            let available = is_available(pod, min_ready, now);
            if available && unavailable >= max_unavailable {
                continue;
            }
            delete_pod(&ctx, &ds, pod).await?;
            unavailable += i32::from(available);
            *slot = None;
        }
    }

    // Nodes without a pod get one (a node whose old pod is still terminating waits).
    let terminating_on: Vec<String> = list_owned::<Pod>(client, &ns, Some(&spec.selector), &uid)
        .await?
        .iter()
        .filter(|p| selector::is_deleting(p))
        .map(|p| node_of(p).to_string())
        .collect();
    let mut labels = BTreeMap::new();
    labels.insert(CONTROLLER_REVISION_HASH.to_string(), hash.clone());
    for (node_name, slot) in desired.iter_mut() {
        if slot.is_some() || terminating_on.contains(node_name) {
            continue;
        }
        let mut pod = pod_from_template(
            &spec.template,
            &ns,
            format!("{name}-"),
            owner_ref(ds.as_ref()),
            &labels,
        );
        if let Some(s) = pod.spec.as_mut() {
            s.node_name = Some(node_name.clone());
            let tolerations = s.tolerations.get_or_insert_default();
            for t in default_tolerations() {
                if !tolerations.contains(&t) {
                    tolerations.push(t);
                }
            }
        }
        let pod = create_pod(client, &pod).await?;
        let message = format!(
            "Created pod: {}",
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        ctx.events
            .daemonset
            .publish(ds.as_ref(), EventType::Normal, "SuccessfulCreate", &message)
            .await;
        *slot = Some(pod);
    }

    let scheduled: Vec<&Pod> = desired.values().flatten().collect();
    let available = scheduled
        .iter()
        .filter(|p| is_available(p, min_ready, now))
        .count() as i32;
    let old = ds.status.clone().unwrap_or_default();
    let new = DaemonSetStatus {
        desired_number_scheduled: desired.len() as i32,
        current_number_scheduled: scheduled.len() as i32,
        number_misscheduled: misscheduled,
        number_ready: scheduled.iter().filter(|p| is_ready(p)).count() as i32,
        number_available: Some(available),
        number_unavailable: Some(desired.len() as i32 - available),
        updated_number_scheduled: Some(
            scheduled
                .iter()
                .filter(|p| revision_of(p) == Some(hash.as_str()))
                .count() as i32,
        ),
        observed_generation: ds.metadata.generation,
        ..old.clone()
    };
    if new != old {
        Api::<DaemonSet>::namespaced(client.clone(), &ns)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": new })),
            )
            .await
            .ctx(|| format!("writing the status of daemonset {object}"))?;
    }
    Ok(Action::await_change())
}
