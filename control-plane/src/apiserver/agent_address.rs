//! Where a node's agent listens: its InternalIP and the port it reports as its kubelet
//! endpoint (`status.daemonEndpoints.kubeletEndpoint.Port`). The API server dials it there
//! for `pods/{name}/log`, the node proxy and the metrics API's scrapes, as Kubernetes dials
//! a kubelet.

use coxswain_api::registry;
use serde_json::Value;

use super::objects::from_store;
use super::status_error::ApiError;
use crate::store::Store;

/// The stored Node `node_name`, if it exists.
pub async fn load_node(store: &dyn Store, node_name: &str) -> Result<Option<Value>, ApiError> {
    let kind = registry::lookup("v1", "Node")
        .ok_or_else(|| ApiError::Internal("the registry has no Node kind".to_string()))?;
    let key = kind
        .store_key(None, node_name)
        .map_err(|e| ApiError::BadRequest(format!("node name: {e}")))?;
    match store.get(&key).await? {
        Some(stored) => Ok(Some(from_store(&stored)?)),
        None => Ok(None),
    }
}

/// `ip:port` (`[ip]:port` for IPv6) of the agent of `node`, a Node object.
pub fn agent_address(node: &Value) -> Result<String, ApiError> {
    let node_name = node
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ip = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .and_then(|a| a.get("address").and_then(Value::as_str))
        .ok_or_else(|| {
            ApiError::ServiceUnavailable(format!("node {node_name} reports no InternalIP address"))
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| {
            ApiError::ServiceUnavailable(format!(
                "node {node_name} reports no agent port \
                 (status.daemonEndpoints.kubeletEndpoint.Port)"
            ))
        })?;
    Ok(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn address_from_internal_ip_and_kubelet_port() {
        let node = |ip: &str| {
            json!({"metadata": {"name": "n1"}, "status": {
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": ip}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}})
        };
        assert_eq!(agent_address(&node("10.0.0.1")).unwrap(), "10.0.0.1:10250");
        assert_eq!(agent_address(&node("fd00::1")).unwrap(), "[fd00::1]:10250");
        let error = agent_address(&json!({"metadata": {"name": "n2"}, "status": {}})).unwrap_err();
        assert!(
            error.to_string().contains("n2 reports no InternalIP"),
            "{error}"
        );
    }
}
