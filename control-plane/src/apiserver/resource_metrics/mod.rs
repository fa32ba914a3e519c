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
//! been scraped twice. Lists take `labelSelector` and `fieldSelector`, matched against the
//! Node or Pod the metrics are of (as metrics-server does), whose labels they then carry.

pub mod samples;
pub mod scraper;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use coxswain_api::registry;

use super::negotiate::{Format, respond};
use super::objects::from_store;
use super::request::Query;
use super::selectors::Selectors;
use super::status_error::ApiError;
use crate::store::Store;
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

/// Serves `path` when it is under `/apis/metrics.k8s.io`; `None` otherwise. `store` holds
/// the Nodes and Pods that selectors are matched against.
pub async fn serve(
    store: &dyn Store,
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
    let query = Query::parse(query);
    let selectors = match Selectors::from_query(&query) {
        Ok(selectors) => selectors,
        Err(e) => return Some(Err(e)),
    };
    let value = match answer(cache, &segments[1..], path) {
        Ok(value) => value,
        Err(e) => return Some(Err(e)),
    };
    Some(
        select(store, value, &selectors)
            .await
            .map(|value| respond(StatusCode::OK, Format::Json, &value, &[])),
    )
}

/// Keeps the items of a metrics list whose Node or Pod `selectors` select, each labelled
/// with its object's labels; anything else is returned as it is.
async fn select(
    store: &dyn Store,
    mut value: Value,
    selectors: &Selectors,
) -> Result<Value, ApiError> {
    if selectors.is_empty() {
        return Ok(value);
    }
    let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) else {
        return Ok(value);
    };
    let mut kept = Vec::new();
    for mut item in std::mem::take(items) {
        let (kind, namespace) = match item["kind"].as_str() {
            Some("NodeMetrics") => ("Node", None),
            _ => (
                "Pod",
                item.pointer("/metadata/namespace").and_then(Value::as_str),
            ),
        };
        let name = item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let info = registry::lookup("v1", kind)
            .ok_or_else(|| ApiError::Internal(format!("the registry has no {kind} kind")))?;
        let key = info
            .store_key(namespace, name)
            .map_err(|e| ApiError::Internal(format!("{kind} {name}: {e}")))?;
        let Some(stored) = store.get(&key).await? else {
            continue;
        };
        let object = from_store(&stored)?;
        if selectors.matches(&object) {
            if let Some(labels) = object.pointer("/metadata/labels") {
                item["metadata"]["labels"] = labels.clone();
            }
            kept.push(item);
        }
    }
    *items = kept;
    Ok(value)
}

fn answer(cache: &ScrapeCache, segments: &[&str], path: &str) -> Result<Value, ApiError> {
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

    async fn get(
        store: &dyn Store,
        cache: &ScrapeCache,
        method: Method,
        path: &str,
        query: Option<&str>,
    ) -> Option<Result<Value, ApiError>> {
        let response = serve(store, cache, &method, path, query).await?;
        Some(match response {
            Ok(response) => {
                let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
                Ok(serde_json::from_slice(&body).unwrap())
            }
            Err(e) => Err(e),
        })
    }

    fn store() -> (tempfile::TempDir, crate::store::EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::EmbeddedStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn unknown_objects_and_paths_are_not_found_and_writes_refused() {
        let (_dir, store) = store();
        let cache = ScrapeCache::default();
        let at = |path: &'static str| get(&store, &cache, Method::GET, path, None);
        assert!(at("/apis/apps/v1").await.is_none());
        let error = at("/apis/metrics.k8s.io/v1beta1/nodes/n1")
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&error, ApiError::NotFound { kind: Some(k), .. } if k == "nodes"),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "nodes.metrics.k8s.io \"n1\" not found");
        assert!(matches!(
            at("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/p")
                .await
                .unwrap(),
            Err(ApiError::NotFound { .. })
        ));
        assert!(matches!(
            at("/apis/metrics.k8s.io/v1beta1/widgets").await.unwrap(),
            Err(ApiError::NotFound { .. })
        ));
        let empty = at("/apis/metrics.k8s.io/v1beta1/pods")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(empty["kind"], "PodMetricsList");
        let path = "/apis/metrics.k8s.io/v1beta1/pods";
        assert!(matches!(
            get(&store, &cache, Method::DELETE, path, None)
                .await
                .unwrap(),
            Err(ApiError::MethodNotAllowed(_))
        ));
        let bad = get(
            &store,
            &cache,
            Method::GET,
            path,
            Some("labelSelector=a%20in%20("),
        )
        .await;
        assert!(matches!(bad.unwrap(), Err(ApiError::BadRequest(_))));
    }

    #[tokio::test]
    async fn selectors_match_the_pods_and_label_their_metrics() {
        let (_dir, store) = store();
        for (name, app) in [("a", "x"), ("b", "y")] {
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "ml", "labels": {"app": app}},
                "spec": {"nodeName": "n1"}});
            let key = registry::lookup("v1", "Pod")
                .unwrap()
                .store_key(Some("ml"), name)
                .unwrap();
            store
                .create(&key, crate::apiserver::objects::to_store(&pod))
                .await
                .unwrap();
        }
        let cache = ScrapeCache::default();
        for (cpu, ts) in [(1.0, 1000), (2.0, 2000)] {
            let text: String = ["a", "b", "gone"]
                .iter()
                .map(|pod| {
                    format!(
                        "container_cpu_usage_seconds_total{{container=\"c\",namespace=\"ml\",pod=\"{pod}\"}} {cpu} {ts}\n"
                    )
                })
                .collect();
            cache.record("n1", samples::parse(&text, 0).unwrap());
        }
        let path = "/apis/metrics.k8s.io/v1beta1/namespaces/ml/pods";
        let all = get(&store, &cache, Method::GET, path, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(all["items"].as_array().unwrap().len(), 3, "{all:#}");
        let x = get(
            &store,
            &cache,
            Method::GET,
            path,
            Some("labelSelector=app%3Dx"),
        )
        .await
        .unwrap()
        .unwrap();
        let items = x["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{x:#}");
        assert_eq!(items[0]["metadata"]["name"], "a");
        assert_eq!(items[0]["metadata"]["labels"]["app"], "x");
        assert_eq!(items[0]["containers"][0]["usage"]["cpu"], "1000000000n");
        let b = get(
            &store,
            &cache,
            Method::GET,
            path,
            Some("fieldSelector=metadata.name%3Db"),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(b["items"].as_array().unwrap().len(), 1, "{b:#}");
        assert_eq!(b["items"][0]["metadata"]["name"], "b");
    }
}
