//! Pod Security admission over HTTP: baseline in namespaces without a label (403 with
//! Kubernetes' message), the `pod-security.kubernetes.io/enforce` label's three levels,
//! `coxswain-system` privileged from the start, warnings (not refusals) for workload
//! templates, bad labels refused, and pod writes that change no spec left alone.

mod apiserver_support;

use apiserver_support::{Backend, TestServer, client};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Api {
    server: TestServer,
    http: reqwest::Client,
}

impl Api {
    async fn start() -> Self {
        Api {
            server: TestServer::start(Backend::Embedded)
                .await
                .expect("server starts"),
            http: client(),
        }
    }

    /// Sends `body` to `path`; the status, the body and the `Warning` headers.
    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Value,
    ) -> (StatusCode, Value, Vec<String>) {
        let response = self
            .http
            .request(method, self.server.at(path))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let warnings = response
            .headers()
            .get_all("warning")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body, warnings)
    }

    async fn create(&self, path: &str, body: Value) -> (StatusCode, Value, Vec<String>) {
        self.send(Method::POST, path, "application/json", body)
            .await
    }

    async fn namespace(&self, name: &str, labels: Value) -> StatusCode {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": name, "labels": labels}});
        self.create("/api/v1/namespaces", ns).await.0
    }

    async fn label(&self, namespace: &str, labels: Value) -> StatusCode {
        let patch = json!({"metadata": {"labels": labels}});
        let path = format!("/api/v1/namespaces/{namespace}");
        self.send(Method::PATCH, &path, "application/merge-patch+json", patch)
            .await
            .0
    }

    /// Creates `pod` in `namespace`: the status and, on refusal, the message.
    async fn pod(&self, namespace: &str, pod: Value) -> (StatusCode, String) {
        let path = format!("/api/v1/namespaces/{namespace}/pods");
        let (status, body, _) = self.create(&path, pod).await;
        (status, body["message"].as_str().unwrap_or("").to_string())
    }
}

fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

fn privileged_pod() -> Value {
    pod(
        "priv",
        json!({"containers": [{"name": "c", "image": "busybox",
                               "securityContext": {"privileged": true}}]}),
    )
}

fn host_path_pod() -> Value {
    pod(
        "hostpath",
        json!({"containers": [{"name": "c", "image": "busybox"}],
               "volumes": [{"name": "data", "hostPath": {"path": "/var/lib"}}]}),
    )
}

fn host_pid_pod() -> Value {
    pod(
        "hostpid",
        json!({"hostPID": true, "containers": [{"name": "c", "image": "busybox"}]}),
    )
}

fn plain_pod(name: &str) -> Value {
    pod(
        name,
        json!({"containers": [{"name": "c", "image": "busybox"}]}),
    )
}

fn restricted_pod() -> Value {
    pod(
        "hardened",
        json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                   "seccompProfile": {"type": "RuntimeDefault"}},
               "containers": [{"name": "c", "image": "busybox", "securityContext": {
                   "allowPrivilegeEscalation": false,
                   "capabilities": {"drop": ["ALL"]}}}]}),
    )
}

#[tokio::test]
async fn the_default_namespace_refuses_privileged_host_path_and_host_pid_pods_with_the_reason() {
    let api = Api::start().await;
    let cases = [
        (
            privileged_pod(),
            "pods \"priv\" is forbidden: violates PodSecurity \"baseline:latest\": privileged \
             (container \"c\" must not set securityContext.privileged=true)",
        ),
        (
            host_path_pod(),
            "pods \"hostpath\" is forbidden: violates PodSecurity \"baseline:latest\": hostPath \
             volumes (volume \"data\")",
        ),
        (
            host_pid_pod(),
            "pods \"hostpid\" is forbidden: violates PodSecurity \"baseline:latest\": host \
             namespaces (hostPID=true)",
        ),
    ];
    for (pod, message) in cases {
        let path = "/api/v1/namespaces/default/pods";
        let (status, body, _) = api.create(path, pod).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["reason"], "Forbidden", "{body}");
        assert_eq!(body["code"], 403, "{body}");
        assert_eq!(body["message"], message);
    }
    // Nothing was stored.
    let list = api
        .http
        .get(api.server.at("/api/v1/namespaces/default/pods"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
    assert_eq!(
        api.pod("default", plain_pod("fine")).await.0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn the_enforce_label_sets_the_level() {
    let api = Api::start().await;
    let enforce = "pod-security.kubernetes.io/enforce";
    assert_eq!(
        api.namespace("ops", json!({enforce: "privileged"})).await,
        StatusCode::CREATED
    );
    for pod in [privileged_pod(), host_path_pod(), host_pid_pod()] {
        let (status, message) = api.pod("ops", pod).await;
        assert_eq!(status, StatusCode::CREATED, "{message}");
    }

    // coxswain-system is created privileged; a new namespace without a label is baseline.
    assert_eq!(
        api.pod("coxswain-system", host_pid_pod()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(api.namespace("plain", json!({})).await, StatusCode::CREATED);
    assert_eq!(
        api.pod("plain", host_pid_pod()).await.0,
        StatusCode::FORBIDDEN
    );

    assert_eq!(
        api.namespace("strict", json!({enforce: "restricted"}))
            .await,
        StatusCode::CREATED
    );
    let (status, message) = api.pod("strict", plain_pod("plain")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        message,
        "pods \"plain\" is forbidden: violates PodSecurity \"restricted:latest\": \
         allowPrivilegeEscalation != false (container \"c\" must set \
         securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \
         \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod \
         or container \"c\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or \
         container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \
         \"Localhost\")"
    );
    assert_eq!(
        api.pod("strict", restricted_pod()).await.0,
        StatusCode::CREATED
    );

    // Relabelling changes what new pods may be; a version label shows in the message.
    assert_eq!(
        api.label(
            "ops",
            json!({enforce: "baseline", "pod-security.kubernetes.io/enforce-version": "v1.30"})
        )
        .await,
        StatusCode::OK
    );
    let mut again = privileged_pod();
    again["metadata"]["name"] = json!("priv2");
    let (status, message) = api.pod("ops", again).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        message.contains("violates PodSecurity \"baseline:v1.30\": privileged"),
        "{message}"
    );

    // The pods already there may still be written (labels, status): no spec change.
    let patch = json!({"metadata": {"labels": {"seen": "yes"}}});
    let (status, body, _) = api
        .send(
            Method::PATCH,
            "/api/v1/namespaces/ops/pods/priv",
            "application/merge-patch+json",
            patch,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn bad_level_labels_are_refused_naming_the_label() {
    let api = Api::start().await;
    let (status, body, _) = api
        .create(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x",
                   "labels": {"pod-security.kubernetes.io/enforce": "lax"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["details"]["causes"][0]["field"],
        "metadata.labels[pod-security.kubernetes.io/enforce]",
        "{body}"
    );
    assert_eq!(
        api.label("default", json!({"pod-security.kubernetes.io/warn": "max"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn workload_templates_are_admitted_with_a_warning() {
    let api = Api::start().await;
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {
            "metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                     "volumes": [{"name": "data", "hostPath": {"path": "/var/lib"}}]}}}});
    let (status, body, warnings) = api
        .create("/apis/apps/v1/namespaces/default/deployments", deployment)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        warnings,
        ["299 - \"would violate PodSecurity 'baseline:latest': hostPath volumes (volume 'data')\""]
    );

    // A warn label stricter than enforce warns on pods that are admitted.
    assert_eq!(
        api.label(
            "default",
            json!({"pod-security.kubernetes.io/warn": "restricted"})
        )
        .await,
        StatusCode::OK
    );
    let (status, _, warnings) = api
        .create("/api/v1/namespaces/default/pods", plain_pod("warned"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .contains("would violate PodSecurity 'restricted:latest': allowPrivilegeEscalation"),
        "{warnings:?}"
    );
}
