//! Pod status and termination reports to the control plane. Each pod has a
//! reporter task that sends the newest status its thread published — at once when
//! the pod reached a new milestone (phase, condition, container state), else at most
//! once per `min_interval` — retrying with back-off while the control plane is away.

use std::time::Duration;

use coxswain_proto::node::v1alpha1::node_service_client::NodeServiceClient;
use coxswain_proto::node::v1alpha1::{PodTerminatedRequest, UpdatePodStatusRequest};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

use super::backoff::Backoff;
use super::connected;

/// Which pod a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodKey {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

impl std::fmt::Display for PodKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} ({})", self.namespace, self.name, self.uid)
    }
}

fn retry_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(5))
}

/// Sends `key`'s status each time `status` changes, until its sender is dropped or
/// `shutdown` fires. Changes come at most once per `min_interval`, except a change of
/// the pod's milestones (phase, conditions, container states), which goes at once:
/// a pod reaching Running is not held back behind the Pending it just left.
pub async fn report_pod_status(
    node_name: String,
    key: PodKey,
    mut status: watch::Receiver<Option<Vec<u8>>>,
    mut channel: watch::Receiver<Option<Channel>>,
    min_interval: Duration,
    shutdown: CancellationToken,
) {
    let mut pending = false;
    let mut last_sent = None;
    loop {
        if !pending {
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                _ = shutdown.cancelled() => return,
            }
        }
        pending = false;
        let mut backoff = retry_backoff();
        loop {
            let Some(json) = status.borrow_and_update().clone() else {
                break;
            };
            let Some(ch) = connected(&mut channel, &shutdown).await else {
                return;
            };
            let milestones = milestones(&json);
            let request = UpdatePodStatusRequest {
                node_name: node_name.clone(),
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                uid: key.uid.clone(),
                status: json,
            };
            match NodeServiceClient::new(ch).update_pod_status(request).await {
                Ok(_) => {
                    last_sent = Some(milestones);
                    break;
                }
                // The pod is gone, the name now belongs to a newer pod, or the status
                // was refused: sending it again would not help; the next one may.
                Err(e)
                    if matches!(
                        e.code(),
                        Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument
                    ) =>
                {
                    tracing::debug!(pod = %key, "status not written: {}", e.message());
                    break;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(pod = %key, "writing the pod status failed ({}: {}); retrying in {delay:?}", e.code(), e.message());
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
        let until = tokio::time::Instant::now() + min_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                _ = shutdown.cancelled() => return,
                changed = status.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    pending = true;
                    let now = status.borrow().as_deref().map(milestones);
                    if now != last_sent {
                        break;
                    }
                }
            }
        }
    }
}

/// What of a pod status (JSON) is worth reporting without delay: the phase, the
/// conditions' statuses, and each container's state kind and readiness. Times,
/// messages and restart back-off details are left out.
fn milestones(json: &[u8]) -> String {
    let Ok(status) = serde_json::from_slice::<serde_json::Value>(json) else {
        return String::new();
    };
    let mut out = status["phase"].as_str().unwrap_or_default().to_string();
    for condition in status["conditions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            " {}={}",
            condition["type"].as_str().unwrap_or_default(),
            condition["status"].as_str().unwrap_or_default()
        ));
    }
    for key in ["initContainerStatuses", "containerStatuses"] {
        for container in status[key].as_array().into_iter().flatten() {
            let state = container["state"]
                .as_object()
                .and_then(|s| s.keys().next().cloned())
                .unwrap_or_default();
            out.push_str(&format!(
                " {}:{state}:{}",
                container["name"].as_str().unwrap_or_default(),
                container["ready"].as_bool().unwrap_or(false)
            ));
        }
    }
    out
}

/// Tells the control plane everything of the terminating pod `key` is gone, retrying
/// until it answers (a pod that no longer exists counts as done).
pub async fn report_pod_terminated(
    node_name: String,
    key: PodKey,
    mut channel: watch::Receiver<Option<Channel>>,
    shutdown: CancellationToken,
) {
    let mut backoff = retry_backoff();
    loop {
        let Some(ch) = connected(&mut channel, &shutdown).await else {
            return;
        };
        let request = PodTerminatedRequest {
            node_name: node_name.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            uid: key.uid.clone(),
        };
        match NodeServiceClient::new(ch).pod_terminated(request).await {
            Ok(_) => return,
            Err(e) if matches!(e.code(), Code::NotFound | Code::FailedPrecondition) => return,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(pod = %key, "reporting the pod terminated failed ({}: {}); retrying in {delay:?}", e.code(), e.message());
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::milestones;

    #[test]
    fn milestones_follow_phase_conditions_and_container_states_but_not_times() {
        let status = |phase: &str, state: &str, ready: bool, started: &str| {
            serde_json::to_vec(&serde_json::json!({
                "phase": phase,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                                "lastTransitionTime": started}],
                "containerStatuses": [{"name": "main", "ready": ready,
                                       "state": {state: {"startedAt": started}}}],
            }))
            .unwrap()
        };
        let pending = milestones(&status("Pending", "waiting", false, "t0"));
        let running = milestones(&status("Running", "running", true, "t1"));
        assert_ne!(pending, running);
        assert_eq!(
            running,
            milestones(&status("Running", "running", true, "t2"))
        );
        assert_ne!(
            running,
            milestones(&status("Running", "terminated", false, "t2"))
        );
        assert_eq!(milestones(b"not json"), "");
    }
}
