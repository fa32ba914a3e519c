//! A write that changes nothing keeps the object's resourceVersion, as in Kubernetes: applying the
//! same manifest twice, an empty merge patch and a PUT of the object as read are all no-ops, while
//! a real change still gets a new resourceVersion.

mod apiserver_support;

use apiserver_support::{Backend, TestServer, client};
use reqwest::Method;
use serde_json::{Value, json};

const POD: &str = "/api/v1/namespaces/default/pods/noop";

async fn send(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    content_type: &str,
    body: &Value,
) -> Value {
    let response = c
        .request(method, url)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("request sent");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.expect("JSON body")
}

fn rv(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string()
}

async fn scenario(backend: Backend) {
    let server = TestServer::start(backend).await.expect("server started");
    let c = client();
    let url = server.at(POD);
    let apply = format!("{url}?fieldManager=test");
    let manifest = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "noop", "labels": {"a": "1"}},
                          "spec": {"containers": [{"name": "main", "image": "busybox"}]}});
    let created = send(
        &c,
        Method::PATCH,
        &apply,
        "application/apply-patch+yaml",
        &manifest,
    )
    .await;
    let again = send(
        &c,
        Method::PATCH,
        &apply,
        "application/apply-patch+yaml",
        &manifest,
    )
    .await;
    assert_eq!(
        rv(&again),
        rv(&created),
        "a second identical apply must not write"
    );

    let patched = send(
        &c,
        Method::PATCH,
        &url,
        "application/merge-patch+json",
        &json!({}),
    )
    .await;
    assert_eq!(
        rv(&patched),
        rv(&created),
        "an empty merge patch must not write"
    );

    let put = send(&c, Method::PUT, &url, "application/json", &patched).await;
    assert_eq!(
        rv(&put),
        rv(&created),
        "a PUT of the object as read must not write"
    );

    let changed = send(
        &c,
        Method::PATCH,
        &url,
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"a": "2"}}}),
    )
    .await;
    assert_ne!(
        rv(&changed),
        rv(&created),
        "a real change gets a new resourceVersion"
    );
    assert_eq!(changed["metadata"]["labels"]["a"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_op_writes_keep_the_resource_version_on_the_embedded_store() {
    scenario(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_op_writes_keep_the_resource_version_on_etcd() {
    scenario(Backend::Etcd).await;
}
