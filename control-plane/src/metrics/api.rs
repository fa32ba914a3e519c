//! The API request middleware: counts and times every request, tracks open watches, and
//! serves `GET /metrics`.
//!
//! Labels follow Kubernetes' apiserver: `verb` is the API verb (`GET`, `LIST`, `WATCH`,
//! `CREATE`, `UPDATE`, `PATCH`, `DELETE`), `group` is empty for the core group, `scope` is
//! `resource` for one object, `namespace` for a namespaced collection and `cluster` otherwise.
//! Requests outside `/api` and `/apis` (discovery roots aside), and paths that name no known
//! resource, carry empty resource labels so a scanner cannot grow the label space. Watches are
//! left out of the latency histogram (their duration is the watch's life, not a latency) and
//! are counted in `apiserver_longrunning_requests` until their body ends.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use tower_layer::Layer;
use tower_service::Service;

use super::{Metrics, TEXT_FORMAT, register};
use crate::apiserver::request::{ApiPath, Query, parse_path};

/// Kubernetes' buckets for `apiserver_request_duration_seconds`.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// The path the metrics are served on.
pub const METRICS_PATH: &str = "/metrics";

/// Metrics of API requests.
pub struct ApiMetrics {
    /// `apiserver_request_total{verb,group,version,resource,subresource,scope,code}`.
    pub requests: IntCounterVec,
    /// `apiserver_request_duration_seconds{verb,group,version,resource,subresource,scope}`.
    pub duration: HistogramVec,
    /// `apiserver_longrunning_requests{verb,resource}`: open watches.
    pub longrunning: IntGaugeVec,
}

impl ApiMetrics {
    pub(super) fn register(registry: &Registry) -> ApiMetrics {
        let labels = [
            "verb",
            "group",
            "version",
            "resource",
            "subresource",
            "scope",
        ];
        let mut with_code = labels.to_vec();
        with_code.push("code");
        ApiMetrics {
            requests: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "apiserver_request_total",
                        "Counter of API requests by verb, resource, scope and HTTP response code.",
                    ),
                    &with_code,
                )
                .expect("valid metric"),
            ),
            duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "apiserver_request_duration_seconds",
                        "Response latency of API requests until the response headers, watches excluded.",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                    &labels,
                )
                .expect("valid metric"),
            ),
            longrunning: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "apiserver_longrunning_requests",
                        "Number of open long-running requests (watches) by verb and resource.",
                    ),
                    &["verb", "resource"],
                )
                .expect("valid metric"),
            ),
        }
    }
}

/// What a request is, in the labels Kubernetes uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLabels {
    /// `GET`, `LIST`, `WATCH`, `CREATE`, `UPDATE`, `PATCH`, `DELETE`, ...
    pub verb: String,
    /// The API group, empty for core and for non-resource requests.
    pub group: String,
    /// The API version.
    pub version: String,
    /// The resource's plural name.
    pub resource: String,
    /// The subresource (`status`).
    pub subresource: String,
    /// `resource`, `namespace` or `cluster`; empty for non-resource requests.
    pub scope: String,
}

impl RequestLabels {
    /// The labels of a request with `method`, `path` and raw `query`.
    pub fn of(method: &Method, path: &str, query: Option<&str>) -> RequestLabels {
        let Ok(Some(ApiPath::Resource(resource))) = parse_path(path) else {
            return RequestLabels {
                verb: non_resource_verb(method),
                ..RequestLabels::default()
            };
        };
        let named = resource.name.is_some();
        let watch = Query::parse(query).flag("watch").unwrap_or(false);
        let verb = match (method.clone(), named) {
            (Method::GET | Method::HEAD, false) if watch => "WATCH",
            (Method::GET | Method::HEAD, false) => "LIST",
            (Method::GET | Method::HEAD, true) => "GET",
            (Method::POST, _) => "CREATE",
            (Method::PUT, _) => "UPDATE",
            (Method::PATCH, _) => "PATCH",
            (Method::DELETE, true) => "DELETE",
            (Method::DELETE, false) => "DELETECOLLECTION",
            (other, _) => {
                return RequestLabels {
                    verb: non_resource_verb(&other),
                    ..RequestLabels::default()
                };
            }
        };
        let scope = if named {
            "resource"
        } else if resource.namespace.is_some() {
            "namespace"
        } else {
            "cluster"
        };
        RequestLabels {
            verb: verb.to_string(),
            group: resource.kind.group.to_string(),
            version: resource.kind.version.to_string(),
            resource: resource.kind.plural.to_string(),
            subresource: resource.subresource.unwrap_or_default(),
            scope: scope.to_string(),
        }
    }

    fn values(&self) -> [&str; 6] {
        [
            &self.verb,
            &self.group,
            &self.version,
            &self.resource,
            &self.subresource,
            &self.scope,
        ]
    }
}

/// Kubernetes reports non-resource requests with the HTTP method as the verb; methods outside
/// the standard set are folded into `OTHER` to bound the label space.
fn non_resource_verb(method: &Method) -> String {
    match *method {
        Method::GET | Method::HEAD => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
    .to_string()
}

/// The middleware layer: meters every request of the service it wraps and serves
/// `GET /metrics`; with no [`Metrics`] it passes requests through untouched.
pub fn router_layer(metrics: Option<Arc<Metrics>>) -> MetricsLayer {
    MetricsLayer { metrics }
}

/// See [`router_layer`].
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Option<Arc<Metrics>>,
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`MetricsLayer`] wraps around the API's router.
#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Option<Arc<Metrics>>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for MetricsService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> BoxFuture {
        // The clone is not necessarily ready: call the instance poll_ready was called on.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(metrics) = self.metrics.clone() else {
            return Box::pin(inner.call(request));
        };
        if request.uri().path() == METRICS_PATH {
            return Box::pin(async move { Ok(scrape(&metrics, request.method())) });
        }
        let labels = RequestLabels::of(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        Box::pin(async move {
            let start = Instant::now();
            let response = inner.call(request).await?;
            Ok(record(&metrics, labels, start, response))
        })
    }
}

fn scrape(metrics: &Metrics, method: &Method) -> Response {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not supported on {METRICS_PATH} (use GET)"),
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], metrics.encode()).into_response()
}

fn record(
    metrics: &Arc<Metrics>,
    labels: RequestLabels,
    start: Instant,
    response: Response,
) -> Response {
    let api = &metrics.api;
    let code = response.status().as_u16().to_string();
    let values = labels.values();
    let mut with_code = values.to_vec();
    with_code.push(&code);
    api.requests.with_label_values(&with_code).inc();
    if labels.verb != "WATCH" {
        api.duration
            .with_label_values(&values)
            .observe(start.elapsed().as_secs_f64());
        return response;
    }
    if !response.status().is_success() {
        return response;
    }
    let gauge = api
        .longrunning
        .with_label_values(&["WATCH", &labels.resource]);
    let open = OpenWatch::new(gauge);
    let (parts, body) = response.into_parts();
    // The guard lives as long as the body stream: the watch is open until the client goes or
    // the server ends the stream.
    let stream = body.into_data_stream().map(move |chunk| {
        let _ = &open;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Counts one open watch in the gauge until dropped.
struct OpenWatch(prometheus::IntGauge);

impl OpenWatch {
    fn new(gauge: prometheus::IntGauge) -> OpenWatch {
        gauge.inc();
        OpenWatch(gauge)
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(method: Method, path: &str, query: Option<&str>) -> RequestLabels {
        RequestLabels::of(&method, path, query)
    }

    #[test]
    fn verbs_follow_kubernetes() {
        let pods = "/api/v1/namespaces/default/pods";
        assert_eq!(labels(Method::GET, pods, None).verb, "LIST");
        assert_eq!(labels(Method::GET, pods, Some("watch=true")).verb, "WATCH");
        assert_eq!(labels(Method::GET, pods, Some("watch=1")).verb, "WATCH");
        assert_eq!(labels(Method::POST, pods, None).verb, "CREATE");
        let pod = "/api/v1/namespaces/default/pods/p";
        assert_eq!(labels(Method::GET, pod, None).verb, "GET");
        assert_eq!(labels(Method::PUT, pod, None).verb, "UPDATE");
        assert_eq!(labels(Method::PATCH, pod, None).verb, "PATCH");
        assert_eq!(labels(Method::DELETE, pod, None).verb, "DELETE");
    }

    #[test]
    fn scope_group_and_subresource() {
        let status = labels(Method::PUT, "/api/v1/namespaces/ns/pods/p/status", None);
        assert_eq!(
            status,
            RequestLabels {
                verb: "UPDATE".into(),
                group: String::new(),
                version: "v1".into(),
                resource: "pods".into(),
                subresource: "status".into(),
                scope: "resource".into(),
            }
        );
        assert_eq!(labels(Method::GET, "/api/v1/pods", None).scope, "cluster");
        assert_eq!(labels(Method::GET, "/api/v1/nodes", None).scope, "cluster");
        let jobs = labels(Method::GET, "/apis/batch/v1/namespaces/ns/jobs", None);
        assert_eq!(
            (jobs.group.as_str(), jobs.scope.as_str()),
            ("batch", "namespace")
        );
    }

    #[test]
    fn unknown_paths_carry_no_resource_labels() {
        for path in ["/api/v1/namespaces/ns/widgets", "/no/such/path", "/healthz"] {
            let l = labels(Method::GET, path, None);
            assert_eq!(
                (l.verb.as_str(), l.resource.as_str(), l.scope.as_str()),
                ("GET", "", ""),
                "{path}"
            );
        }
        assert_eq!(
            labels(Method::from_bytes(b"BREW").unwrap(), "/x", None).verb,
            "OTHER"
        );
    }
}
