//! UpdatePodStatus and PodTerminated: an agent writes only the pods bound to its node, and
//! only the pod it was told about (matching uid), never a newer pod of the same name.

use coxswain_proto::node::v1alpha1 as pb;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use tonic::Status;

use super::{
    CONFLICT_RETRIES, NodeService, api_status, is_conflict, is_not_found, require_node_name,
};

/// Serves UpdatePodStatus: writes the status subresource of a pod bound to the node.
pub(crate) async fn update(
    service: &NodeService,
    request: pb::UpdatePodStatusRequest,
) -> Result<pb::UpdatePodStatusResponse, Status> {
    require_node_name(&request.node_name)?;
    require(&request.namespace, "namespace")?;
    require(&request.name, "name")?;
    let status: PodStatus = serde_json::from_slice(&request.status).map_err(|e| {
        Status::invalid_argument(format!("status: not a core/v1 PodStatus in JSON: {e}"))
    })?;
    let pods: Api<Pod> = Api::namespaced(service.client.clone(), &request.namespace);
    let what = format!("pod {}/{}", request.namespace, request.name);
    let mut attempt = 0;
    loop {
        let mut pod = pods
            .get_opt(&request.name)
            .await
            .map_err(|e| api_status(&what, e))?
            .ok_or_else(|| Status::not_found(format!("{what} not found")))?;
        check_owner(&pod, &what, &request.node_name, &request.uid)?;
        pod.status = Some(keep_terminal_phase(pod.status.as_ref(), status.clone()));
        match pods
            .replace_status(&request.name, &PostParams::default(), &pod)
            .await
        {
            Ok(_) => return Ok(pb::UpdatePodStatusResponse {}),
            Err(e) if is_conflict(&e) && attempt < CONFLICT_RETRIES => attempt += 1,
            Err(e) if is_not_found(&e) => {
                return Err(Status::not_found(format!("{what} not found")));
            }
            Err(e) => return Err(api_status(&what, e)),
        }
    }
}

/// Serves PodTerminated: deletes the pod at once (grace period 0), only if it is still the
/// pod with that uid; a pod already gone is fine.
pub(crate) async fn terminated(
    service: &NodeService,
    request: pb::PodTerminatedRequest,
) -> Result<pb::PodTerminatedResponse, Status> {
    require_node_name(&request.node_name)?;
    require(&request.namespace, "namespace")?;
    require(&request.name, "name")?;
    require(&request.uid, "uid")?;
    let pods: Api<Pod> = Api::namespaced(service.client.clone(), &request.namespace);
    let what = format!("pod {}/{}", request.namespace, request.name);
    let Some(pod) = pods
        .get_opt(&request.name)
        .await
        .map_err(|e| api_status(&what, e))?
    else {
        return Ok(pb::PodTerminatedResponse {});
    };
    if pod.metadata.uid.as_deref() != Some(request.uid.as_str()) {
        // A newer pod of the same name: the terminated one is already gone.
        return Ok(pb::PodTerminatedResponse {});
    }
    check_owner(&pod, &what, &request.node_name, &request.uid)?;
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(request.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&request.name, &params).await {
        Ok(_) => Ok(pb::PodTerminatedResponse {}),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(pb::PodTerminatedResponse {}),
        Err(e) => Err(api_status(&what, e)),
    }
}

/// A terminal phase is final (as the API server enforces in Kubernetes): when the control
/// plane failed a pod (its node was lost), an agent that comes back cannot revive it, nor
/// turn it `Succeeded` by stopping its containers; its container states are still taken.
fn keep_terminal_phase(current: Option<&PodStatus>, mut new: PodStatus) -> PodStatus {
    let Some(current) = current else { return new };
    let terminal = |phase: Option<&str>| matches!(phase, Some("Succeeded" | "Failed"));
    if terminal(current.phase.as_deref()) && new.phase != current.phase {
        new.phase = current.phase.clone();
        new.reason = current.reason.clone();
        new.message = current.message.clone();
        let kept: Vec<_> = current
            .conditions
            .iter()
            .flatten()
            .filter(|c| c.type_ == "DisruptionTarget")
            .cloned()
            .collect();
        let conditions = new.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.extend(kept);
    }
    new
}

pub(crate) fn require(value: &str, field: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field}: required")));
    }
    Ok(())
}

/// Refuses a pod that is not bound to `node` or is not the pod with `uid`.
pub(crate) fn check_owner(pod: &Pod, what: &str, node: &str, uid: &str) -> Result<(), Status> {
    let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    if bound != Some(node) {
        return Err(Status::failed_precondition(format!(
            "{what} is bound to {}, not to node {node}",
            bound.map_or("no node".to_string(), |n| format!("node {n}"))
        )));
    }
    let actual = pod.metadata.uid.as_deref().unwrap_or_default();
    if !uid.is_empty() && actual != uid {
        return Err(Status::failed_precondition(format!(
            "{what} has uid {actual}, not {uid} (the pod was replaced)"
        )));
    }
    Ok(())
}
