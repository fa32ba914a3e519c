//! The `PodScheduled` condition: `False`/`Unschedulable` with the aggregated reason when a
//! pod fits nowhere, `True` once bound; and `status.nominatedNodeName`, set on a pod that
//! preempted victims on a node and cleared when it is bound elsewhere. One task writes
//! the updates in order through the status subresource (strategic merge by condition
//! type), skipping a write that would change nothing.

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

/// What to do with `status.nominatedNodeName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Nomination {
    /// Leave it.
    Keep,
    /// Set it: the pod preempted victims there and waits for them to go.
    Set(String),
    /// Clear it unless it names this node (the pod was bound here).
    ClearUnless(String),
}

/// One condition (and nomination) to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StatusUpdate {
    pod: PodKey,
    status: &'static str,
    reason: &'static str,
    message: String,
    nominated: Nomination,
}

/// `PodScheduled=True` for a pod bound to `node`; a nomination elsewhere is cleared.
pub(super) fn scheduled(pod: &PodKey, node: &str) -> StatusUpdate {
    StatusUpdate {
        pod: pod.clone(),
        status: "True",
        reason: "",
        message: String::new(),
        nominated: Nomination::ClearUnless(node.to_string()),
    }
}

/// `PodScheduled=False`, reason `Unschedulable`.
pub(super) fn unschedulable(pod: &PodKey, message: String) -> StatusUpdate {
    StatusUpdate {
        pod: pod.clone(),
        status: "False",
        reason: "Unschedulable",
        message,
        nominated: Nomination::Keep,
    }
}

impl StatusUpdate {
    /// The same update, nominating `node` (after preempting victims there).
    pub(super) fn nominating(mut self, node: &str) -> StatusUpdate {
        self.nominated = Nomination::Set(node.to_string());
        self
    }
}

/// The `nominatedNodeName` to write (`Some(None)`: clear it), or `None` to leave it.
fn nomination_patch(pod: Option<&Pod>, nominated: &Nomination) -> Option<Option<String>> {
    let current = pod
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty());
    match nominated {
        Nomination::Keep => None,
        Nomination::Set(node) if current == Some(node.as_str()) => None,
        Nomination::Set(node) => Some(Some(node.clone())),
        Nomination::ClearUnless(node) => match current {
            Some(n) if n != node => Some(None),
            _ => None,
        },
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
        let cached = pods.get(&update.pod);
        let nomination = nomination_patch(cached.as_ref(), &update.nominated);
        if nomination.is_none() && cached.is_some_and(|p| unchanged(&p, &update)) {
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
        let mut patch = json!({"status": {"conditions": [condition]}});
        if let Some(node) = nomination {
            patch["status"]["nominatedNodeName"] = json!(node);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn nominated_to(node: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"nominatedNodeName": node}
        }))
        .unwrap()
    }

    #[test]
    fn a_nomination_is_set_once_and_cleared_only_when_bound_elsewhere() {
        let a = nominated_to(Some("node-a"));
        let none = nominated_to(None);
        let set = Nomination::Set("node-a".into());
        assert_eq!(
            nomination_patch(Some(&none), &set),
            Some(Some("node-a".into()))
        );
        assert_eq!(nomination_patch(Some(&a), &set), None);
        let bound_b = Nomination::ClearUnless("node-b".into());
        assert_eq!(nomination_patch(Some(&a), &bound_b), Some(None));
        let bound_a = Nomination::ClearUnless("node-a".into());
        assert_eq!(nomination_patch(Some(&a), &bound_a), None);
        assert_eq!(nomination_patch(Some(&none), &bound_b), None);
        assert_eq!(nomination_patch(Some(&a), &Nomination::Keep), None);
    }
}
