//! The `PodScheduled` condition: `False`/`Unschedulable` with the aggregated reason when a
//! pod fits nowhere, `True` once bound. One task writes the updates in order through the
//! status subresource (strategic merge by condition type), skipping a write that would
//! not change the condition.

use coxswain_api::k8s::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;

use super::super::model::PodKey;
use super::PodCache;

/// The condition type.
const POD_SCHEDULED: &str = "PodScheduled";

/// One condition to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StatusUpdate {
    pod: PodKey,
    status: &'static str,
    reason: &'static str,
    message: String,
}

/// `PodScheduled=True` for a bound pod.
pub(super) fn scheduled(pod: &PodKey) -> StatusUpdate {
    StatusUpdate {
        pod: pod.clone(),
        status: "True",
        reason: "",
        message: String::new(),
    }
}

/// `PodScheduled=False`, reason `Unschedulable`.
pub(super) fn unschedulable(pod: &PodKey, message: String) -> StatusUpdate {
    StatusUpdate {
        pod: pod.clone(),
        status: "False",
        reason: "Unschedulable",
        message,
    }
}

/// The sending side, used by the scheduling thread (never blocks).
#[derive(Debug, Clone)]
pub(super) struct StatusUpdates(UnboundedSender<StatusUpdate>);

impl StatusUpdates {
    /// Queues `update`; dropped when the writer is gone (shutting down).
    pub(super) fn send(&self, update: StatusUpdate) {
        let _ = self.0.send(update);
    }
}

/// Spawns the writer task.
pub(super) fn spawn(
    client: kube::Client,
    pods: PodCache,
    stop: CancellationToken,
) -> StatusUpdates {
    let (tx, rx) = unbounded_channel();
    tokio::spawn(write_all(client, pods, rx, stop));
    StatusUpdates(tx)
}

/// Whether `pod` already carries the condition `update` would write.
fn unchanged(pod: &Pod, update: &StatusUpdate) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == POD_SCHEDULED)
        .is_some_and(|c| {
            c.status == update.status
                && c.reason.as_deref().unwrap_or("") == update.reason
                && c.message.as_deref().unwrap_or("") == update.message
        })
}

async fn write_all(
    client: kube::Client,
    pods: PodCache,
    mut rx: UnboundedReceiver<StatusUpdate>,
    stop: CancellationToken,
) {
    loop {
        let update = tokio::select! {
            _ = stop.cancelled() => return,
            update = rx.recv() => match update {
                Some(u) => u,
                None => return,
            },
        };
        let Some((ns, name)) = update.pod.split_once('/') else {
            continue;
        };
        if pods
            .get(&update.pod)
            .is_some_and(|p| unchanged(&p, &update))
        {
            continue;
        }
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let mut condition = json!({
            "type": POD_SCHEDULED,
            "status": update.status,
            "lastProbeTime": null,
            "lastTransitionTime": now,
        });
        // `null` removes a reason or message left from an earlier `False`.
        let text = |t: &str| if t.is_empty() { json!(null) } else { json!(t) };
        condition["reason"] = text(update.reason);
        condition["message"] = text(&update.message);
        let patch = json!({"status": {"conditions": [condition]}});
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(pod) => pods.put(update.pod.to_string(), pod),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(pod = %update.pod, error = %e, "writing the PodScheduled condition failed");
            }
        }
    }
}
