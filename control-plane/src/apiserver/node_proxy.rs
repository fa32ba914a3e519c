//! The node proxy subresource, `GET /api/v1/nodes/{name}/proxy/{path}`: the API server
//! forwards the GET to the node's agent (its log service port, where the agent serves
//! `/metrics`, `/metrics/resource` and `/metrics/gpus`), as Kubernetes forwards it to the
//! kubelet. So `kubectl get --raw /api/v1/nodes/n1/proxy/metrics/resource` reads a node's
//! figures through the API.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;

use super::agent_address::{agent_address, load_node};
use super::status_error::ApiError;
use crate::store::Store;

/// How long the agent may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The node and the path on its agent that a request path names, for
/// `/api/v1/nodes/{name}[:port]/proxy[/{path}]`; `None` for any other path.
pub fn parse(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/api/v1/nodes/")?;
    let (node, rest) = rest.split_once('/')?;
    let tail = rest.strip_prefix("proxy")?;
    if !(tail.is_empty() || tail.starts_with('/')) || node.is_empty() {
        return None;
    }
    // `name:port` names the kubelet port in Kubernetes; the agent has one port.
    let node = node.split_once(':').map_or(node, |(name, _)| name);
    let target = if tail.is_empty() { "/" } else { tail };
    Some((node.to_string(), target.to_string()))
}

/// Forwards a GET of `target` (with `query`) to the agent of `node`.
pub async fn serve(
    store: &dyn Store,
    method: &Method,
    node: &str,
    target: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    if *method != Method::GET {
        return Err(ApiError::MethodNotAllowed(format!(
            "{method} is not supported on the node proxy (use GET)"
        )));
    }
    let stored = load_node(store, node)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            message: format!("nodes \"{node}\" not found"),
            name: Some(node.to_string()),
            kind: Some("nodes".to_string()),
        })?;
    let address = agent_address(&stored)?;
    let url = match query.filter(|q| !q.is_empty()) {
        Some(query) => format!("http://{address}{target}?{query}"),
        None => format!("http://{address}{target}"),
    };
    let unreachable = |e: reqwest::Error| {
        ApiError::ServiceUnavailable(format!(
            "the agent of node {node} at {address}: {e} (is cox agent running there?)"
        ))
    };
    let response = reqwest::Client::new()
        .get(&url)
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(unreachable)?;
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain")
        .to_string();
    let body = response.bytes().await.map_err(unreachable)?;
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .map_err(|e| ApiError::Internal(format!("building the proxied response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn proxy_paths_name_the_node_and_the_agents_path() {
        let parsed = parse;
        assert_eq!(
            parsed("/api/v1/nodes/n1/proxy/metrics/resource"),
            Some(("n1".into(), "/metrics/resource".into()))
        );
        assert_eq!(
            parsed("/api/v1/nodes/n1:10250/proxy"),
            Some(("n1".into(), "/".into()))
        );
        assert_eq!(parsed("/api/v1/nodes/n1/status"), None);
        assert_eq!(parsed("/api/v1/nodes/n1/proxyx"), None);
        assert_eq!(parsed("/api/v1/nodes/n1"), None);
    }
}
