//! `/metrics` on the API's router: request counters and latency with Kubernetes' labels, open
//! watches, store operations and object counts, all clean under the real `promtool`.

mod metrics_support;

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use coxswain_control_plane::apiserver::ApiServer;
use coxswain_control_plane::metrics::{MeteredStore, Metrics};
use coxswain_control_plane::store::{EmbeddedStore, Store};
use metrics_support::{has_series_with, promtool_check, sample};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

const PODS: &str = "/api/v1/namespaces/default/pods";

struct Fixture {
    router: axum::Router,
    store: Arc<MeteredStore>,
    _dir: tempfile::TempDir,
}

async fn fixture(metrics: &Arc<Metrics>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let store = Arc::new(MeteredStore::new(embedded, "embedded", metrics.clone()));
    let server = ApiServer::new(store.clone(), CancellationToken::new())
        .await
        .unwrap()
        .with_metrics(metrics.clone());
    Fixture {
        router: server.router(),
        store,
        _dir: dir,
    }
}

async fn call(
    router: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<serde_json::Value>,
) -> Response {
    let mut request = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(value) => {
            request = request.header("content-type", "application/json");
            Body::from(value.to_string())
        }
        None => Body::empty(),
    };
    router
        .clone()
        .call(request.body(body).unwrap())
        .await
        .unwrap()
}

async fn scrape(router: &axum::Router) -> String {
    let response = call(router, Method::GET, "/metrics", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    String::from_utf8(
        to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap()
}

fn pod(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    })
}

fn labels<'a>(verb: &'a str, scope: &'a str, code: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut l = vec![
        ("verb", verb),
        ("group", ""),
        ("version", "v1"),
        ("resource", "pods"),
        ("subresource", ""),
        ("scope", scope),
    ];
    if let Some(code) = code {
        l.push(("code", code));
    }
    l
}

#[tokio::test]
async fn requests_are_counted_and_timed_with_kubernetes_labels() {
    let metrics = Metrics::new();
    let f = fixture(&metrics).await;
    let r = &f.router;
    assert_eq!(
        call(r, Method::POST, PODS, Some(pod("p1"))).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        call(r, Method::POST, PODS, Some(pod("p1"))).await.status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        call(r, Method::GET, &format!("{PODS}/p1"), None)
            .await
            .status(),
        StatusCode::OK
    );
    let missing = call(r, Method::GET, &format!("{PODS}/missing"), None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        call(r, Method::GET, PODS, None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(r, Method::GET, "/no/such/path", None).await.status(),
        StatusCode::NOT_FOUND
    );

    let text = scrape(r).await;
    let total = "apiserver_request_total";
    assert_eq!(
        sample(&text, total, &labels("CREATE", "namespace", Some("201"))),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, total, &labels("CREATE", "namespace", Some("409"))),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, total, &labels("GET", "resource", Some("200"))),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, total, &labels("GET", "resource", Some("404"))),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, total, &labels("LIST", "namespace", Some("200"))),
        Some(1.0)
    );
    let unknown = [
        ("verb", "GET"),
        ("group", ""),
        ("version", ""),
        ("resource", ""),
        ("subresource", ""),
        ("scope", ""),
        ("code", "404"),
    ];
    assert_eq!(
        sample(&text, total, &unknown),
        Some(1.0),
        "unknown paths get empty labels"
    );
    assert!(
        !has_series_with(&text, total, "resource", "such"),
        "no label from a bad path"
    );

    let count = "apiserver_request_duration_seconds_count";
    assert_eq!(
        sample(&text, count, &labels("GET", "resource", None)),
        Some(2.0),
        "200 and 404"
    );
    assert_eq!(
        sample(&text, count, &labels("CREATE", "namespace", None)),
        Some(2.0)
    );
    let mut inf = labels("LIST", "namespace", None);
    inf.push(("le", "+Inf"));
    assert_eq!(
        sample(&text, "apiserver_request_duration_seconds_bucket", &inf),
        Some(1.0)
    );

    // The store under the API: the three bootstrap namespaces, the two system
    // PriorityClasses, the six default RBAC objects (cluster-admin, view, edit,
    // system:node-bootstrapper and two bindings) and p1 were created, the second p1 was not.
    let ops = "coxswain_store_operations_total";
    let create_ok = [("operation", "create"), ("result", "ok")];
    assert_eq!(sample(&text, ops, &create_ok), Some(12.0), "{text}");
    let exists = [("operation", "create"), ("result", "already_exists")];
    assert_eq!(sample(&text, ops, &exists), Some(1.0));
    let timed = [("operation", "create"), ("backend", "embedded")];
    assert_eq!(
        sample(
            &text,
            "coxswain_store_operation_duration_seconds_count",
            &timed
        ),
        Some(13.0)
    );
    promtool_check(&text);
}

#[tokio::test]
async fn watches_are_long_running_and_not_timed() {
    let metrics = Metrics::new();
    let f = fixture(&metrics).await;
    let watching = call(&f.router, Method::GET, &format!("{PODS}?watch=true"), None).await;
    assert_eq!(watching.status(), StatusCode::OK);
    let open = [("verb", "WATCH"), ("resource", "pods")];
    let text = scrape(&f.router).await;
    assert_eq!(
        sample(&text, "apiserver_longrunning_requests", &open),
        Some(1.0),
        "{text}"
    );
    let total = labels("WATCH", "namespace", Some("200"));
    assert_eq!(sample(&text, "apiserver_request_total", &total), Some(1.0));
    assert!(
        !has_series_with(
            &text,
            "apiserver_request_duration_seconds_count",
            "verb",
            "WATCH"
        ),
        "watches stay out of the latency histogram: {text}"
    );
    promtool_check(&text);
    drop(watching);
    let text = scrape(&f.router).await;
    assert_eq!(
        sample(&text, "apiserver_longrunning_requests", &open),
        Some(0.0),
        "{text}"
    );
}

#[tokio::test]
async fn store_objects_bytes_and_compactions_are_counted() {
    let metrics = Metrics::new();
    let f = fixture(&metrics).await;
    for name in ["a", "b"] {
        assert_eq!(
            call(&f.router, Method::POST, PODS, Some(pod(name)))
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    f.store.refresh_object_gauges().await.unwrap();
    let revision = f.store.current_revision().await.unwrap();
    f.store.compact(revision).await.unwrap();
    let text = scrape(&f.router).await;
    assert_eq!(
        sample(&text, "coxswain_store_objects", &[("resource", "pods")]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "coxswain_store_objects",
            &[("resource", "namespaces")]
        ),
        Some(3.0)
    );
    let bytes = sample(
        &text,
        "coxswain_store_object_bytes",
        &[("resource", "pods")],
    )
    .unwrap();
    assert!(bytes > 100.0, "two pods take more than 100 bytes: {bytes}");
    assert_eq!(
        sample(&text, "coxswain_store_compactions_total", &[]),
        Some(1.0)
    );
    let compact = [("operation", "compact"), ("result", "ok")];
    assert_eq!(
        sample(&text, "coxswain_store_operations_total", &compact),
        Some(1.0)
    );
    // Deleting one pod shows up at the next count.
    let deleted = call(&f.router, Method::DELETE, &format!("{PODS}/a"), None).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    f.store.refresh_object_gauges().await.unwrap();
    let text = scrape(&f.router).await;
    assert_eq!(
        sample(&text, "coxswain_store_objects", &[("resource", "pods")]),
        Some(1.0)
    );
    promtool_check(&text);
}

#[tokio::test]
async fn without_metrics_the_router_has_no_metrics_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let server = ApiServer::new(store, CancellationToken::new())
        .await
        .unwrap();
    let response = call(&server.router(), Method::GET, "/metrics", None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
