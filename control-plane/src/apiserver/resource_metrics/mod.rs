//! The resource metrics API, `metrics.k8s.io/v1beta1`, that `kubectl top` reads — what
//! metrics-server serves in Kubernetes, here served by the API server itself:
//!
//! - `GET /apis/metrics.k8s.io/v1beta1/nodes[/{name}]`: NodeMetrics(List);
//! - `GET /apis/metrics.k8s.io/v1beta1/pods`, `.../namespaces/{ns}/pods[/{name}]`:
//!   PodMetrics(List), each with its containers' usage;
//! - the group's discovery documents ([`group`], [`resource_list`]).
//!
//! Usage comes from [`scraper`], which scrapes every agent's `/metrics/resource`; CPU is the
//! rate between the last two scrapes ([`samples`]), so a node or pod is NotFound until it has
//! been scraped twice.

pub mod samples;
pub mod scraper;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::negotiate::{Format, respond};
use super::request::Query;
use super::status_error::ApiError;
use samples::{ScrapeCache, Usage};

/// The group's name.
pub const GROUP: &str = "metrics.k8s.io";
/// Its only version.
pub const VERSION: &str = "v1beta1";
const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// The group's entry in `/apis` (an APIGroup without kind).
pub fn group() -> Value {
    let version = json!({"groupVersion": GROUP_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [version.clone()], "preferredVersion": version})
}

/// `GET /apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    let resource = |name: &str, kind: &str, namespaced: bool| {
        json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
               "verbs": ["get", "list"]})
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [resource("nodes", "NodeMetrics", false), resource("pods", "PodMetrics", true)],
    })
}

/// Serves `path` when it is under `/apis/metrics.k8s.io`; `None` otherwise.
pub fn serve(
    cache: &ScrapeCache,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Option<Result<Response, ApiError>> {
    let rest = path.strip_prefix("/apis/")?.trim_end_matches('/');
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.first() != Some(&GROUP) {
        return None;
    }
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Some(Err(ApiError::MethodNotAllowed(format!(
            "{method} is not supported on {path} (the metrics API is read-only)"
        ))));
    }
    Some(
        answer(cache, &segments[1..], path, query)
            .map(|value| respond(StatusCode::OK, Format::Json, &value, &[])),
    )
}

fn answer(
    cache: &ScrapeCache,
    segments: &[&str],
    path: &str,
    query: Option<&str>,
) -> Result<Value, ApiError> {
    let query = Query::parse(query);
    for selector in ["labelSelector", "fieldSelector"] {
        if query.get(selector).is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::BadRequest(format!(
                "{selector}: selectors are not supported by the metrics API yet"
            )));
        }
    }
    match segments {
        [] => {
            let mut value = group();
            value["kind"] = json!("APIGroup");
            value["apiVersion"] = json!("v1");
            Ok(value)
        }
        [VERSION] => Ok(resource_list()),
        [VERSION, "nodes"] => {
            let items = cache
                .nodes()
                .iter()
                .map(|(name, usage)| node_metrics(name, usage))
                .collect();
            Ok(list("NodeMetricsList", items))
        }
        [VERSION, "nodes", name] => cache
            .node(name)
            .map(|usage| node_metrics(name, &usage))
            .ok_or_else(|| not_found("nodes", name)),
        [VERSION, "pods"] => Ok(pod_list(cache, None)),
        [VERSION, "namespaces", namespace, "pods"] => Ok(pod_list(cache, Some(namespace))),
        [VERSION, "namespaces", namespace, "pods", name] => cache
            .pods(Some(namespace))
            .into_iter()
            .find(|((_, pod), _)| pod == name)
            .map(|((ns, pod), containers)| pod_metrics(&ns, &pod, &containers))
            .ok_or_else(|| not_found("pods", name)),
        _ => Err(ApiError::no_route(path)),
    }
}

fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError::NotFound {
        message: format!("{resource}.{GROUP} \"{name}\" not found"),
        name: Some(name.to_string()),
        kind: Some(resource.to_string()),
    }
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})
}

fn pod_list(cache: &ScrapeCache, namespace: Option<&str>) -> Value {
    let items = cache
        .pods(namespace)
        .iter()
        .map(|((ns, pod), containers)| pod_metrics(ns, pod, containers))
        .collect();
    list("PodMetricsList", items)
}

/// RFC 3339 of a time in milliseconds since the epoch.
fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A window as a Go duration (`15.002s`), which `metav1.Duration` reads.
fn window(ms: i64) -> String {
    format!("{}s", ms as f64 / 1000.0)
}

/// `{cpu, memory}` as Quantities: nanocores and bytes (`Ki` when whole).
fn usage_json(usage: &Usage) -> Value {
    let memory = if usage.memory_bytes.is_multiple_of(1024) {
        format!("{}Ki", usage.memory_bytes / 1024)
    } else {
        usage.memory_bytes.to_string()
    };
    json!({"cpu": format!("{}n", usage.nanocores), "memory": memory})
}

fn node_metrics(name: &str, usage: &Usage) -> Value {
    json!({
        "kind": "NodeMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": {"name": name, "creationTimestamp": super::objects::now()},
        "timestamp": rfc3339(usage.timestamp_ms),
        "window": window(usage.window_ms),
        "usage": usage_json(usage),
    })
}

fn pod_metrics(namespace: &str, name: &str, containers: &[(String, Usage)]) -> Value {
    let first = containers[0].1;
    let containers: Vec<Value> = containers
        .iter()
        .map(|(name, usage)| json!({"name": name, "usage": usage_json(usage)}))
        .collect();
    json!({
        "kind": "PodMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": {"name": name, "namespace": namespace,
                     "creationTimestamp": super::objects::now()},
        "timestamp": rfc3339(first.timestamp_ms),
        "window": window(first.window_ms),
        "containers": containers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_windows_read_as_kubernetes_writes_them() {
        let usage = Usage {
            nanocores: 250_000_000,
            memory_bytes: 4096,
            timestamp_ms: 1_700_000_000_500,
            window_ms: 15_002,
        };
        assert_eq!(
            usage_json(&usage),
            json!({"cpu": "250000000n", "memory": "4Ki"})
        );
        assert_eq!(window(15_002), "15.002s");
        assert_eq!(window(1000), "1s");
        assert_eq!(rfc3339(1_700_000_000_500), "2023-11-14T22:13:20.5Z");
    }

    #[test]
    fn unknown_objects_and_paths_are_not_found_and_writes_refused() {
        let cache = ScrapeCache::default();
        let get = |path: &str| serve(&cache, &Method::GET, path, None);
        assert!(get("/apis/apps/v1").is_none());
        let error = get("/apis/metrics.k8s.io/v1beta1/nodes/n1")
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&error, ApiError::NotFound { kind: Some(k), .. } if k == "nodes"),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "nodes.metrics.k8s.io \"n1\" not found");
        assert!(matches!(
            get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/p").unwrap(),
            Err(ApiError::NotFound { .. })
        ));
        assert!(matches!(
            get("/apis/metrics.k8s.io/v1beta1/widgets").unwrap(),
            Err(ApiError::NotFound { .. })
        ));
        assert!(get("/apis/metrics.k8s.io/v1beta1/pods").unwrap().is_ok());
        assert!(matches!(
            serve(
                &cache,
                &Method::DELETE,
                "/apis/metrics.k8s.io/v1beta1/pods",
                None
            )
            .unwrap(),
            Err(ApiError::MethodNotAllowed(_))
        ));
        assert!(matches!(
            serve(
                &cache,
                &Method::GET,
                "/apis/metrics.k8s.io/v1beta1/pods",
                Some("labelSelector=app%3Dx")
            )
            .unwrap(),
            Err(ApiError::BadRequest(_))
        ));
    }
}
