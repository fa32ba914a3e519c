//! `GET /api/v1/namespaces/<ns>/pods/<name>/log`: a container's log, fetched from the agent on
//! the pod's node as the API server fetches it from a kubelet.
//!
//! The agent serves `AgentService.ContainerLogs` on its node's InternalIP, at the port it
//! reports in `status.daemonEndpoints.kubeletEndpoint.Port`; the chunks it streams become the
//! `text/plain` body (streamed, so `follow=true` keeps the response open).

use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use coxswain_proto::node::v1alpha1 as pb;
use futures::StreamExt;
use serde_json::Value;

use super::Ctx;
use crate::apiserver::agent_address::{agent_address, load_node};
use crate::apiserver::objects::from_store;
use crate::apiserver::status_error::ApiError;

/// How long dialling an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET <pod>/log`.
pub async fn log(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let pod = from_store(&ctx.load().await?)?;
    let name = ctx.name()?.to_string();
    let namespace = ctx.path.namespace.clone().unwrap_or_default();
    let container = pick_container(&pod, &name, ctx.query.get("container"))?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?
        .to_string();
    let endpoint = agent_endpoint(ctx, &node_name).await?;
    let number = |key: &str| -> Result<i64, ApiError> {
        Ok(ctx
            .query
            .number(key)?
            .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)))
    };
    let request = pb::ContainerLogsRequest {
        namespace,
        pod: name.clone(),
        uid: pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        container,
        follow: ctx.query.flag("follow")?,
        previous: ctx.query.flag("previous")?,
        tail_lines: match ctx.query.number("tailLines")? {
            Some(n) => i64::try_from(n).unwrap_or(i64::MAX),
            None => -1,
        },
        timestamps: ctx.query.flag("timestamps")?,
        since_seconds: number("sinceSeconds")?,
        limit_bytes: number("limitBytes")?,
    };
    let unreachable = |why: String| {
        ApiError::ServiceUnavailable(format!(
            "the agent of node {node_name} at {endpoint}: {why} (is cox agent running there?)"
        ))
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|e| unreachable(error_chain(&e)))?;
    let mut client = pb::agent_service_client::AgentServiceClient::new(channel);
    let stream = client
        .container_logs(request)
        .await
        .map_err(|status| from_agent(status, &node_name))?
        .into_inner();
    let body = stream.map(|chunk| chunk.map(|c| Bytes::from(c.data)));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::Internal(format!("building the log response: {e}")))
}

/// The container to read: the named one, or the pod's only container.
fn pick_container(pod: &Value, pod_name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let containers = names("containers");
    let mut all = containers.clone();
    all.extend(names("initContainers"));
    all.extend(names("ephemeralContainers"));
    match asked.filter(|c| !c.is_empty()) {
        Some(asked) if all.iter().any(|c| c == asked) => Ok(asked.to_string()),
        Some(asked) => Err(ApiError::BadRequest(format!(
            "container {asked} is not valid for pod {pod_name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

/// `ip:port` of the agent on `node_name`.
async fn agent_endpoint(ctx: &Ctx<'_>, node_name: &str) -> Result<String, ApiError> {
    let node = load_node(&*ctx.state.store, node_name)
        .await?
        .ok_or_else(|| {
            ApiError::ServiceUnavailable(format!("node {node_name} of the pod does not exist"))
        })?;
    agent_address(&node)
}

/// The agent's refusal as an API error.
fn from_agent(status: tonic::Status, node_name: &str) -> ApiError {
    let message = format!("the agent of node {node_name}: {}", status.message());
    match status.code() {
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
            ApiError::BadRequest(message)
        }
        tonic::Code::NotFound => ApiError::NotFound {
            message,
            name: None,
            kind: None,
        },
        tonic::Code::Unavailable | tonic::Code::Unimplemented => {
            ApiError::ServiceUnavailable(message)
        }
        _ => ApiError::Internal(message),
    }
}

/// An error and its sources, `a: b: c`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
