//! The REST API over HTTP, against both store backends: discovery, CRUD, selectors, paging,
//! the status subresource, every patch type, watches (incl. 410 Gone), finalizers, namespace
//! cascade, Table output and OpenAPI.

mod apiserver_support;

use apiserver_support::{Backend, TestServer, client};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn send(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    content_type: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = c.request(method, url);
    if let Some(body) = body {
        request = request
            .header("content-type", content_type)
            .body(body.to_string());
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let text = response.text().await.expect("body read");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn pod(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
           "spec": {"containers": [{"name": "main", "image": "busybox"}]}})
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const JSON: &str = "application/json";

async fn scenario(backend: Backend) {
    let s = TestServer::start(backend).await.expect("server starts");
    let c = client();
    let get = |path: &str| {
        let c = c.clone();
        let url = s.at(path);
        async move { send(&c, Method::GET, &url, JSON, None).await }
    };

    // Discovery.
    assert_eq!(get("/version").await.1["major"], "1");
    assert_eq!(get("/api").await.1["versions"], json!(["v1"]));
    let groups = get("/apis").await.1;
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "coxswain.dev"),
        "{groups}"
    );
    let resources = get("/apis/coxswain.dev/v1alpha1").await.1;
    let tj = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "trainingjobs")
        .cloned()
        .unwrap();
    assert_eq!(
        (tj["shortNames"].clone(), tj["namespaced"].clone()),
        (json!(["tj"]), json!(true))
    );
    for ns in ["default", "kube-system", "coxswain-system"] {
        assert_eq!(
            get(&format!("/api/v1/namespaces/{ns}")).await.0,
            StatusCode::OK,
            "{ns}"
        );
    }

    // Create, conflict on re-create, generateName.
    let (status, created) = send(
        &c,
        Method::POST,
        &s.at(PODS),
        JSON,
        Some(pod("web-0", json!({"app": "web"}))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    for field in ["uid", "creationTimestamp", "resourceVersion"] {
        assert!(created["metadata"][field].is_string(), "{field}: {created}");
    }
    assert_eq!(
        created["spec"]["restartPolicy"], "Always",
        "defaulted: {created}"
    );
    let (status, body) = send(
        &c,
        Method::POST,
        &s.at(PODS),
        JSON,
        Some(pod("web-0", json!({}))),
    )
    .await;
    assert_eq!(
        (status, body["reason"].clone()),
        (StatusCode::CONFLICT, json!("AlreadyExists"))
    );
    let generated = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "db-", "labels": {"app": "db"}},
                           "spec": {"containers": [{"name": "main", "image": "postgres"}], "nodeName": "n1"}});
    let (status, body) = send(&c, Method::POST, &s.at(PODS), JSON, Some(generated)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let db = body["metadata"]["name"].as_str().unwrap().to_string();
    assert!(db.starts_with("db-") && db.len() == 8, "{db}");

    // YAML in and out; unknown fields warned about under the default fieldValidation=Warn.
    let yaml_pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: from-yaml}\nspec:\n  containers: [{name: c, image: i}]\n  bogus: 1\n";
    let response = c
        .post(s.at(PODS))
        .header("content-type", "application/yaml")
        .header("accept", "application/yaml")
        .body(yaml_pod)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let warning = response
        .headers()
        .get("warning")
        .map(|w| w.to_str().unwrap().to_string());
    assert!(
        warning
            .as_deref()
            .is_some_and(|w| w.contains("unknown field") && w.contains("spec.bogus")),
        "{warning:?}"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("name: from-yaml") && !text.contains("bogus"),
        "{text}"
    );
    assert_eq!(
        send(
            &c,
            Method::DELETE,
            &s.at(&format!("{PODS}/from-yaml")),
            JSON,
            None
        )
        .await
        .0,
        StatusCode::OK
    );

    // Validation: 422 with causes naming the field.
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"}, "spec": {"containers": []}});
    let (status, body) = send(&c, Method::POST, &s.at(PODS), JSON, Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert!(fields.contains(&"metadata.name"), "{body}");

    // Selectors and paging.
    for i in 1..5 {
        send(
            &c,
            Method::POST,
            &s.at(PODS),
            JSON,
            Some(pod(
                &format!("web-{i}"),
                json!({"app": "web", "i": i.to_string()}),
            )),
        )
        .await;
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(
            &get(&format!("{PODS}?labelSelector=app%3Dweb,i%20in%20(1,2)"))
                .await
                .1
        ),
        ["web-1", "web-2"]
    );
    assert_eq!(
        names(&get(&format!("{PODS}?labelSelector=app!%3Dweb")).await.1),
        std::slice::from_ref(&db)
    );
    assert_eq!(
        names(
            &get(&format!("{PODS}?fieldSelector=spec.nodeName%3Dn1"))
                .await
                .1
        ),
        std::slice::from_ref(&db)
    );
    assert_eq!(
        names(
            &get(&format!("{PODS}?fieldSelector=metadata.name%3Dweb-3"))
                .await
                .1
        ),
        ["web-3"]
    );
    assert_eq!(
        names(&get("/api/v1/pods?labelSelector=app").await.1).len(),
        6,
        "all namespaces"
    );
    let mut seen = Vec::new();
    let mut next = String::new();
    loop {
        let page = get(&format!("{PODS}?limit=2&continue={next}")).await.1;
        seen.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(token) => next = token.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");

    // PUT: CAS on resourceVersion; status ignored on the main resource, set via /status.
    let mut current = get(&format!("{PODS}/web-0")).await.1;
    current["metadata"]["labels"]["tier"] = json!("front");
    current["status"] = json!({"phase": "Running"});
    let (status, updated) = send(
        &c,
        Method::PUT,
        &s.at(&format!("{PODS}/web-0")),
        JSON,
        Some(current.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["metadata"]["labels"]["tier"], "front");
    assert!(updated["status"]["phase"] != "Running", "{updated}");
    let (status, body) = send(
        &c,
        Method::PUT,
        &s.at(&format!("{PODS}/web-0")),
        JSON,
        Some(current.clone()),
    )
    .await;
    assert_eq!(
        (status, body["reason"].clone()),
        (StatusCode::CONFLICT, json!("Conflict")),
        "stale resourceVersion"
    );
    let mut with_status = updated.clone();
    with_status["status"] = json!({"phase": "Running"});
    let (status, body) = send(
        &c,
        Method::PUT,
        &s.at(&format!("{PODS}/web-0/status")),
        JSON,
        Some(with_status),
    )
    .await;
    assert_eq!(
        (status, body["status"]["phase"].clone()),
        (StatusCode::OK, json!("Running")),
        "{body}"
    );
    assert_eq!(
        get(&format!("{PODS}?fieldSelector=status.phase%3DRunning"))
            .await
            .1["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // PATCH: merge, JSON patch, strategic merge (containers by name), apply.
    let url = s.at(&format!("{PODS}/web-1"));
    let (status, body) = send(
        &c,
        Method::PATCH,
        &url,
        "application/merge-patch+json",
        Some(json!({"metadata": {"labels": {"merge": "yes"}}})),
    )
    .await;
    assert_eq!(
        (status, body["metadata"]["labels"]["merge"].clone()),
        (StatusCode::OK, json!("yes")),
        "{body}"
    );
    let ops = json!([{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}, {"op": "test", "path": "/metadata/name", "value": "web-1"}]);
    let (status, body) = send(
        &c,
        Method::PATCH,
        &url,
        "application/json-patch+json",
        Some(ops),
    )
    .await;
    assert_eq!(
        (status, body["metadata"]["annotations"]["a"].clone()),
        (StatusCode::OK, json!("b")),
        "{body}"
    );
    let smp = json!({"spec": {"containers": [{"name": "sidecar", "image": "envoy"}, {"name": "main", "image": "busybox:2"}]}});
    let (status, body) = send(
        &c,
        Method::PATCH,
        &url,
        "application/strategic-merge-patch+json",
        Some(smp),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let images: Vec<&str> = body["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["image"].as_str().unwrap())
        .collect();
    assert_eq!(images, ["busybox:2", "envoy"]);
    let apply_url =
        s.at("/apis/coxswain.dev/v1alpha1/namespaces/default/trainingjobs/llm?fieldManager=test");
    let tj = |groups: Value| {
        json!({"apiVersion": "coxswain.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "llm", "labels": {"team": "a"}},
        "spec": {"replicaGroups": groups}})
    };
    let group = |name: &str, n: i32| json!({"name": name, "replicas": n, "gpusPerReplica": 1, "template": {"spec": {"containers": [{"name": "t", "image": "trainer"}]}}});
    let (status, body) = send(
        &c,
        Method::PATCH,
        &apply_url,
        "application/apply-patch+yaml",
        Some(tj(json!([group("worker", 2), group("ps", 1)]))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = send(
        &c,
        Method::PATCH,
        &apply_url,
        "application/apply-patch+yaml",
        Some(tj(json!([group("worker", 4)]))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["spec"]["replicaGroups"],
        json!(
            [group("worker", 4)]
                .iter()
                .map(|g| {
                    let mut g = g.clone();
                    g["restartPolicy"] = body["spec"]["replicaGroups"][0]["restartPolicy"].clone();
                    g["template"] = body["spec"]["replicaGroups"][0]["template"].clone();
                    g
                })
                .collect::<Vec<_>>()
        ),
        "the dropped group is removed: {body}"
    );
    let (status, _) = send(
        &c,
        Method::PATCH,
        &s.at("/apis/coxswain.dev/v1alpha1/namespaces/default/trainingjobs/llm?fieldManager=other"),
        "application/apply-patch+yaml",
        Some(tj(json!([group("worker", 8)]))),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "another manager's field");

    // Watch: from a resourceVersion, sees MODIFIED then DELETED.
    let rv = get(&format!("{PODS}/web-2")).await.1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut watch = c.get(s.at(&format!("{PODS}?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dweb-2&timeoutSeconds=30"))).send().await.unwrap();
    assert_eq!(watch.status(), StatusCode::OK);
    send(
        &c,
        Method::PATCH,
        &s.at(&format!("{PODS}/web-2")),
        "application/merge-patch+json",
        Some(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await;
    let (status, _) = send(
        &c,
        Method::DELETE,
        &s.at(&format!("{PODS}/web-2")),
        JSON,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut buffer = Vec::new();
    let mut types = Vec::new();
    while types.len() < 2 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), watch.chunk())
            .await
            .expect("event in time")
            .unwrap()
            .expect("stream open");
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Value = serde_json::from_slice(&buffer[..end]).unwrap();
            buffer.drain(..=end);
            types.push(line["type"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(types, ["MODIFIED", "DELETED"]);

    // Finalizers hold a delete; removing the last one removes the object.
    let mut held = pod("held", json!({}));
    held["metadata"]["finalizers"] = json!(["test/hold"]);
    send(&c, Method::POST, &s.at(PODS), JSON, Some(held)).await;
    let (status, body) = send(
        &c,
        Method::DELETE,
        &s.at(&format!("{PODS}/held")),
        JSON,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body["metadata"]["deletionTimestamp"].is_string());
    send(
        &c,
        Method::PATCH,
        &s.at(&format!("{PODS}/held")),
        "application/merge-patch+json",
        Some(json!({"metadata": {"finalizers": null}})),
    )
    .await;
    assert_eq!(get(&format!("{PODS}/held")).await.0, StatusCode::NOT_FOUND);

    // Table output.
    let table = c
        .get(s.at(PODS))
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .send()
        .await
        .unwrap();
    let table: Value = table.json().await.unwrap();
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["Name", "Ready", "Status", "Restarts", "Age", "Node", "GPUs"]
    );

    // Namespace cascade.
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "scratch"}});
    assert_eq!(
        send(
            &c,
            Method::POST,
            &s.at("/api/v1/namespaces"),
            JSON,
            Some(ns)
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let scratch = "/api/v1/namespaces/scratch/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
    assert_eq!(
        send(&c, Method::POST, &s.at(scratch), JSON, Some(cm))
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        send(
            &c,
            Method::DELETE,
            &s.at("/api/v1/namespaces/scratch"),
            JSON,
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(get(&format!("{scratch}/c")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        send(
            &c,
            Method::DELETE,
            &s.at("/api/v1/namespaces/default"),
            JSON,
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );

    // Expired watch: 410 in an ERROR event.
    let now: u64 = get(PODS).await.1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    s.store.compact(now).await.unwrap();
    let text = c
        .get(s.at(&format!(
            "{PODS}?watch=true&resourceVersion=1&timeoutSeconds=2"
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["type"].clone(), first["object"]["code"].clone()),
        (json!("ERROR"), json!(410)),
        "{text}"
    );

    // OpenAPI v3 for kubectl.
    let index = get("/openapi/v3").await.1;
    let url = index["paths"]["apis/coxswain.dev/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = get(&url).await.1;
    assert!(doc["components"]["schemas"]["dev.coxswain.v1alpha1.TrainingJobSpec"]["properties"]["replicaGroups"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_on_the_embedded_store() {
    scenario(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_on_etcd() {
    scenario(Backend::Etcd).await;
}
