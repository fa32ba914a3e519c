//! RecordEvent: an agent records a core/v1 Event about its own Node or a pod bound to it
//! (DeviceUnhealthy, DeviceRecovered, ...), through an [`EventRecorder`] with the node as the
//! source host. Any other object is refused: an agent speaks only for what it runs.

use coxswain_proto::node::v1alpha1 as pb;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::Api;
use tonic::Status;

use super::{NodeService, api_status, require_node_name};
use crate::events::{EventRecorder, EventType};

/// The component agents' events are recorded as (a kubelet's is "kubelet").
pub const AGENT_COMPONENT: &str = "coxswain-agent";

/// Longest message kept; longer ones are cut (the API's events carry up to 1 KiB).
const MAX_MESSAGE: usize = 1024;

/// Serves RecordEvent.
pub(crate) async fn record(
    service: &NodeService,
    request: pb::RecordEventRequest,
) -> Result<pb::RecordEventResponse, Status> {
    require_node_name(&request.node_name)?;
    let object = request
        .involved_object
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("involved_object: required"))?;
    let event_type = match request.r#type.as_str() {
        "Normal" => EventType::Normal,
        "Warning" => EventType::Warning,
        other => {
            return Err(Status::invalid_argument(format!(
                "type {other:?}: must be Normal or Warning"
            )));
        }
    };
    let reason_ok = !request.reason.is_empty()
        && request.reason.len() <= 128
        && request.reason.chars().all(|c| c.is_ascii_alphanumeric());
    if !reason_ok {
        return Err(Status::invalid_argument(format!(
            "reason {:?}: must be a short CamelCase word (letters and digits)",
            request.reason
        )));
    }
    let reference = match object.kind.as_str() {
        "Node" => node_reference(service, &request.node_name, object).await?,
        "Pod" => pod_reference(service, &request.node_name, object).await?,
        other => {
            return Err(Status::permission_denied(format!(
                "involved_object.kind {other:?}: an agent records events only about its Node \
                 and the pods bound to it"
            )));
        }
    };
    let message = truncate(&request.message, MAX_MESSAGE);
    EventRecorder::new(service.client.clone(), AGENT_COMPONENT)
        .with_host(&request.node_name)
        .record(&reference, event_type, &request.reason, message)
        .await
        .map_err(|e| api_status("event", e))?;
    Ok(pb::RecordEventResponse {})
}

async fn node_reference(
    service: &NodeService,
    node_name: &str,
    object: &pb::InvolvedObject,
) -> Result<ObjectReference, Status> {
    if object.name != node_name {
        return Err(Status::permission_denied(format!(
            "involved_object.name {:?}: node {node_name} may record events only about itself",
            object.name
        )));
    }
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(service.client.clone());
    let what = format!("node {node_name}");
    let node = nodes
        .get_opt(node_name)
        .await
        .map_err(|e| api_status(&what, e))?
        .ok_or_else(|| Status::not_found(format!("{what} not found (register first)")))?;
    Ok(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node_name.to_string()),
        uid: node.metadata.uid,
        ..ObjectReference::default()
    })
}

async fn pod_reference(
    service: &NodeService,
    node_name: &str,
    object: &pb::InvolvedObject,
) -> Result<ObjectReference, Status> {
    if object.namespace.is_empty() || object.name.is_empty() {
        return Err(Status::invalid_argument(
            "involved_object: a Pod needs namespace and name",
        ));
    }
    let pods: Api<Pod> = Api::namespaced(service.client.clone(), &object.namespace);
    let what = format!("pod {}/{}", object.namespace, object.name);
    let pod = pods
        .get_opt(&object.name)
        .await
        .map_err(|e| api_status(&what, e))?
        .ok_or_else(|| Status::not_found(format!("{what} not found")))?;
    let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    if bound != Some(node_name) {
        return Err(Status::failed_precondition(format!(
            "{what} is not bound to node {node_name}: an agent records events only about its own pods"
        )));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if !object.uid.is_empty() && object.uid != uid {
        return Err(Status::failed_precondition(format!(
            "{what} has uid {uid}, not {} (the pod was replaced)",
            object.uid
        )));
    }
    Ok(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(object.namespace.clone()),
        name: Some(object.name.clone()),
        uid: Some(uid),
        resource_version: pod.metadata.resource_version,
        ..ObjectReference::default()
    })
}

/// `message` cut to at most `max` bytes at a character boundary.
fn truncate(message: &str, max: usize) -> &str {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("abcdef", 3), "abc");
    }
}
