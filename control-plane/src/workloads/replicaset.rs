//! The apps/v1 ReplicaSet controller: keeps `replicas` active pods matching the selector.
//!
//! Pods are named `<replicaset>-<random>`; the template's `pod-template-hash` label (set by
//! the Deployment controller) is carried to them. When scaling down, pods that are not on a
//! node, not running or not ready go first, so a Deployment's availability arithmetic holds.
//! Finished pods are not replaced or removed (Kubernetes' pod GC does that).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::error::ApiContext;
use super::owned::{create_pod, delete, list_owned, owner_ref, pod_from_template};
use super::runner::{controller_of, drive};
use super::selector::{self, is_active, is_available, is_ready};
use super::{Context, Error};
use crate::controllers::work_queue::WorkQueue;
use crate::events::EventType;

/// Runs the ReplicaSet controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let queue = WorkQueue::new("replicaset", ctx.config.metrics.as_ref());
    let controller = queue
        .controller(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches(
            Api::<Pod>::all(client),
            watcher::Config::default(),
            queue.mapper(controller_of::<ReplicaSet, Pod>),
        );
    drive(queue, controller, reconcile, ctx, shutdown).await;
}

/// Deletion order: unscheduled, then pending, then not ready, then the newest.
fn deletion_rank(pod: &Pod) -> (bool, bool, bool, std::cmp::Reverse<Option<jiff::Timestamp>>) {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some();
    (
        scheduled,
        selector::phase(pod) == "Running",
        is_ready(pod),
        std::cmp::Reverse(pod.metadata.creation_timestamp.as_ref().map(|t| t.0)),
    )
}

/// One step of a ReplicaSet towards `replicas` pods.
pub async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = &rs.spec;
    let client = &ctx.client;
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0) as usize;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let pods: Vec<Pod> = list_owned(client, &ns, Some(&spec.selector), &uid).await?;
    let mut active: Vec<Pod> = pods.into_iter().filter(is_active).collect();
    if active.len() < replicas {
        let Some(template) = spec.template.as_ref() else {
            return Err(Error::InvalidSpec {
                object: format!("{ns}/{name}"),
                field: "spec.template".into(),
                message: "required to create pods".into(),
            });
        };
        for _ in active.len()..replicas {
            let pod = pod_from_template(
                template,
                &ns,
                format!("{name}-"),
                owner_ref(rs.as_ref()),
                &Default::default(),
            );
            let pod = create_pod(client, &pod).await?;
            let message = format!(
                "Created pod: {}",
                pod.metadata.name.as_deref().unwrap_or_default()
            );
            ctx.events
                .replicaset
                .publish(rs.as_ref(), EventType::Normal, "SuccessfulCreate", &message)
                .await;
            active.push(pod);
        }
    } else if active.len() > replicas {
        active.sort_by_key(deletion_rank);
        let excess = active.len() - replicas;
        for pod in active.drain(..excess) {
            delete(client, &pod, &Default::default()).await?;
            let message = format!(
                "Deleted pod: {}",
                pod.metadata.name.as_deref().unwrap_or_default()
            );
            ctx.events
                .replicaset
                .publish(rs.as_ref(), EventType::Normal, "SuccessfulDelete", &message)
                .await;
        }
    }
    let now = ctx.now();
    let labeled = active
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            spec.template
                .as_ref()
                .and_then(|t| t.metadata.as_ref()?.labels.as_ref())
                .is_none_or(|want| want.iter().all(|(k, v)| labels.get(k) == Some(v)))
        })
        .count();
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| is_available(p, min_ready, now))
        .count();
    let old = rs.status.clone().unwrap_or_default();
    let new = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(labeled as i32),
        ready_replicas: Some(ready as i32),
        available_replicas: Some(available as i32),
        observed_generation: rs.metadata.generation,
        ..old.clone()
    };
    if new != old {
        Api::<ReplicaSet>::namespaced(client.clone(), &ns)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": new })),
            )
            .await
            .ctx(|| format!("writing the status of replicaset {ns}/{name}"))?;
    }
    if ready > available {
        // Pods waiting out minReadySeconds become available without an event.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::await_change())
}
