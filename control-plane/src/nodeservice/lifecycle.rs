//! Node lifecycle: a node whose agent stopped renewing its lease is marked `Ready=Unknown`
//! and its pods `Ready=False`, as Kubernetes' node lifecycle controller does; RenewLease marks
//! the node Ready again and the agent's next pod statuses restore its pods' readiness.
//!
//! Only nodes with a lease are judged: a Node nobody registered (created by hand or by a
//! simulation) has no agent whose silence would mean anything.
//!
//! Pods on a node whose Ready condition has not been True for longer than they tolerate
//! (`node.kubernetes.io/unreachable` / `not-ready` NoExecute tolerations; 300 s when a pod has
//! none, Kubernetes' DefaultTolerationSeconds) are marked `Failed` with reason `NodeLost` and a
//! `DisruptionTarget` condition, so their owners (Jobs, ReplicaSets, TrainingJob gangs) replace
//! them elsewhere. The node service keeps that phase when the agent comes back.
//!
//! [`check_leases`] is one pass at a given time, so tests move time instead of waiting;
//! [`run`] calls it on a tokio interval with the wall clock.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use tokio_util::sync::CancellationToken;

use super::cas::{Part, modify};
use super::lease::LEASE_NAMESPACE;

/// The reason on the Ready condition of a node whose lease expired.
pub const REASON_STATUS_UNKNOWN: &str = "NodeStatusUnknown";
/// The reason on the Ready condition of a node whose agent posts its status.
pub const REASON_AGENT_READY: &str = "AgentReady";
/// The reason on the Ready condition of a pod whose node is not ready.
pub const REASON_NODE_NOT_READY: &str = "NodeNotReady";
/// The reason of a pod failed because its node was lost.
pub const REASON_NODE_LOST: &str = "NodeLost";
/// How long a pod without a matching toleration stays on a node that is not ready.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;
/// The taints Kubernetes puts on unreachable and not-ready nodes; a NoExecute toleration of
/// either keeps a pod there for its `tolerationSeconds`.
const NOT_READY_TAINTS: [&str; 2] = [
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/not-ready",
];

/// Checks every node lease each quarter of `grace` (at least once a second) until `shutdown`.
pub async fn run(client: kube::Client, grace: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval((grace / 4).max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(error) = check_leases(&client, grace, Timestamp::now()).await {
            tracing::warn!(%error, "checking node leases");
        }
    }
}

/// One pass at time `now`: marks every node whose lease was last renewed more than `grace`
/// before `now` `Ready=Unknown` and its pods not ready. Returns the nodes found expired.
pub async fn check_leases(
    client: &kube::Client,
    grace: Duration,
    now: Timestamp,
) -> Result<Vec<String>, kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let nodes: Api<Node> = Api::all(client.clone());
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let mut expired = Vec::new();
    for lease in leases.list(&ListParams::default()).await? {
        let Some(name) = lease.metadata.name.clone() else {
            continue;
        };
        let renewed = lease
            .spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref()))
            .map(|t| t.0);
        let age_ms = renewed.map_or(i64::MAX, |r| {
            now.as_millisecond().saturating_sub(r.as_millisecond())
        });
        if age_ms <= grace_ms {
            continue;
        }
        let message = "Coxswain agent stopped posting node status.";
        let marked = modify(&nodes, &name, Part::Status, |node| {
            let conditions = node_conditions(node);
            set_node_condition(conditions, "Unknown", REASON_STATUS_UNKNOWN, message, now)
        })
        .await?;
        if marked.is_some() {
            mark_pods_not_ready(client, &name, now).await?;
            expired.push(name.clone());
        }
        if let Some(node) = nodes.get_opt(&name).await? {
            fail_pods_past_toleration(client, &node, now).await?;
        }
    }
    Ok(expired)
}

/// Marks `Failed` the unfinished pods on `node` that have stayed on it, not ready, longer
/// than they tolerate.
async fn fail_pods_past_toleration(
    client: &kube::Client,
    node: &Node,
    now: Timestamp,
) -> Result<(), kube::Error> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let Some(since) = ready
        .filter(|c| c.status != "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
    else {
        return Ok(());
    };
    let not_ready_for = now.as_second().saturating_sub(since.as_second());
    let name = node.metadata.name.clone().unwrap_or_default();
    let all: Api<Pod> = Api::all(client.clone());
    let bound = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
        .await?;
    for pod in bound {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        match tolerated_seconds(&pod) {
            Some(seconds) if not_ready_for > seconds => {}
            _ => continue,
        }
        let (Some(namespace), Some(pod_name)) = (pod.metadata.namespace, pod.metadata.name) else {
            continue;
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let message = format!("node {name} which was running pod {pod_name} is unresponsive");
        modify(&pods, &pod_name, Part::Status, |pod| {
            let status = pod.status.get_or_insert_with(Default::default);
            if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                return false;
            }
            status.phase = Some("Failed".to_string());
            status.reason = Some(REASON_NODE_LOST.to_string());
            status.message = Some(message.clone());
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            conditions.retain(|c| c.type_ != "DisruptionTarget");
            conditions.push(PodCondition {
                type_: "DisruptionTarget".to_string(),
                status: "True".to_string(),
                reason: Some("DeletionByTaintManager".to_string()),
                message: Some(message.clone()),
                last_transition_time: Some(Time(now)),
                ..PodCondition::default()
            });
            true
        })
        .await?;
        tracing::info!(pod = %format!("{namespace}/{pod_name}"), node = %name, "pod failed: its node was lost");
    }
    Ok(())
}

/// Seconds `pod` stays on a node that is not ready: its NoExecute toleration of the
/// unreachable/not-ready taints, [`DEFAULT_TOLERATION_SECONDS`] without one; `None` when it
/// tolerates them forever.
fn tolerated_seconds(pod: &Pod) -> Option<i64> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_ref());
    let matching = tolerations.into_iter().flatten().find(|t| {
        let effect_ok = matches!(t.effect.as_deref(), None | Some("") | Some("NoExecute"));
        let key_ok = match t.key.as_deref() {
            None | Some("") => t.operator.as_deref() == Some("Exists"),
            Some(key) => NOT_READY_TAINTS.contains(&key),
        };
        effect_ok && key_ok
    });
    match matching {
        Some(toleration) => toleration.toleration_seconds,
        None => Some(DEFAULT_TOLERATION_SECONDS),
    }
}

/// Sets `Ready=True` on `node` unless it already is; Register and RenewLease call it.
pub async fn mark_ready(client: &kube::Client, node: &str) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    modify(&nodes, node, Part::Status, |node| {
        set_node_condition(
            node_conditions(node),
            "True",
            REASON_AGENT_READY,
            "coxswain agent is posting ready status",
            Timestamp::now(),
        )
    })
    .await?;
    Ok(())
}

fn node_conditions(node: &mut Node) -> &mut Vec<NodeCondition> {
    node.status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
}

/// Sets the node's Ready condition; false when it already had that status.
pub(crate) fn set_node_condition(
    conditions: &mut Vec<NodeCondition>,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready") {
        if ready.status == status {
            return false;
        }
        ready.status = status.to_string();
        ready.reason = Some(reason.to_string());
        ready.message = Some(message.to_string());
        ready.last_transition_time = Some(Time(now));
        // A heartbeat is the agent's: the control plane deciding it is gone is not one.
        if status == "True" {
            ready.last_heartbeat_time = Some(Time(now));
        }
        return true;
    }
    conditions.push(NodeCondition {
        type_: "Ready".to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_transition_time: Some(Time(now)),
        last_heartbeat_time: Some(Time(now)),
    });
    true
}

/// Sets `Ready=False` on every pod bound to `node` that is not already.
async fn mark_pods_not_ready(
    client: &kube::Client,
    node: &str,
    now: Timestamp,
) -> Result<(), kube::Error> {
    let all: Api<Pod> = Api::all(client.clone());
    let bound = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    for pod in bound {
        let (Some(namespace), Some(name)) = (pod.metadata.namespace, pod.metadata.name) else {
            continue;
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let message = format!("node {node} is not ready");
        modify(&pods, &name, Part::Status, |pod| {
            let conditions = pod
                .status
                .get_or_insert_with(Default::default)
                .conditions
                .get_or_insert_with(Vec::new);
            set_pod_not_ready(conditions, &message, now)
        })
        .await?;
    }
    Ok(())
}

fn set_pod_not_ready(conditions: &mut Vec<PodCondition>, message: &str, now: Timestamp) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == "Ready") {
        Some(ready) if ready.status == "False" => false,
        Some(ready) => {
            ready.status = "False".to_string();
            ready.reason = Some(REASON_NODE_NOT_READY.to_string());
            ready.message = Some(message.to_string());
            ready.last_transition_time = Some(Time(now));
            true
        }
        None => {
            conditions.push(PodCondition {
                type_: "Ready".to_string(),
                status: "False".to_string(),
                reason: Some(REASON_NODE_NOT_READY.to_string()),
                message: Some(message.to_string()),
                last_transition_time: Some(Time(now)),
                ..PodCondition::default()
            });
            true
        }
    }
}
