//! Bad input, table-driven: every malformed request gets a 4xx `Status` whose message names the
//! problem, none gets a 5xx, and the server keeps serving. Run against both store backends.

mod apiserver_support;

use apiserver_support::{Backend, TestServer, client};
use reqwest::Method;
use serde_json::{Value, json};

/// One malformed request: method, path, content type, accept, body, expected code, and a
/// fragment the message must contain.
struct Case {
    method: Method,
    path: String,
    content_type: &'static str,
    accept: &'static str,
    body: Vec<u8>,
    code: u16,
    needle: &'static str,
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const TJS: &str = "/apis/coxswain.dev/v1alpha1/namespaces/default/trainingjobs";
const JSON: &str = "application/json";

fn case(
    method: Method,
    path: &str,
    content_type: &'static str,
    body: impl Into<Vec<u8>>,
    code: u16,
    needle: &'static str,
) -> Case {
    Case {
        method,
        path: path.to_string(),
        content_type,
        accept: JSON,
        body: body.into(),
        code,
        needle,
    }
}

fn get(path: &str, code: u16, needle: &'static str) -> Case {
    case(Method::GET, path, JSON, Vec::new(), code, needle)
}

fn post(path: &str, body: Value, code: u16, needle: &'static str) -> Case {
    case(Method::POST, path, JSON, body.to_string(), code, needle)
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

fn with(mut value: Value, pointer: &str, to: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let parent = value.pointer_mut(parent).expect("parent exists");
    match parent {
        Value::Array(items) => items[key.parse::<usize>().expect("an index")] = to,
        other => other[key] = to,
    }
    value
}

fn tj(replicas: Value) -> Value {
    json!({"apiVersion": "coxswain.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "t"},
           "spec": {"replicaGroups": [{"name": "w", "replicas": replicas,
                    "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}]}})
}

fn cases() -> Vec<Case> {
    use Method as M;
    let exists = format!("{PODS}/exists");
    let huge = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"x\":\"{}\"}}}}",
        "a".repeat(3 * 1024 * 1024 + 10)
    );
    let mut cases = vec![
        case(M::POST, PODS, JSON, "{", 400, "not valid JSON"),
        case(
            M::POST,
            PODS,
            "application/yaml",
            "a: [",
            400,
            "not valid YAML",
        ),
        case(M::POST, PODS, JSON, "[]", 400, "not a list"),
        case(M::POST, PODS, JSON, "\"pod\"", 400, "not a string"),
        case(M::POST, PODS, JSON, "", 400, "empty"),
        post(PODS, with(pod("p"), "/kind", json!("Service")), 400, "kind"),
        post(
            PODS,
            with(pod("p"), "/apiVersion", json!("v2")),
            400,
            "apiVersion",
        ),
        post(
            PODS,
            with(pod("p"), "/metadata/namespace", json!("other")),
            400,
            "namespace",
        ),
        post(
            PODS,
            with(pod("p"), "/spec/containers", json!("x")),
            400,
            "spec.containers",
        ),
        post(
            PODS,
            with(pod("p"), "/metadata/labels", json!(["x"])),
            400,
            "metadata.labels",
        ),
        post(TJS, tj(json!("two")), 400, "replicas"),
        post(
            &format!("{PODS}?fieldValidation=Strict"),
            with(pod("p"), "/spec/bogus", json!(1)),
            400,
            "unknown field \"spec.bogus\"",
        ),
        post(
            &format!("{PODS}?fieldValidation=Loud"),
            pod("p"),
            400,
            "fieldValidation",
        ),
        post(PODS, pod("Bad_Name"), 422, "metadata.name"),
        post(PODS, pod(&"a".repeat(300)), 422, "metadata.name"),
        post(
            PODS,
            with(pod("p"), "/metadata", json!({})),
            422,
            "name or generateName",
        ),
        post(
            PODS,
            with(pod("p"), "/spec/containers", json!([])),
            422,
            "spec.containers",
        ),
        post(
            PODS,
            with(pod("p"), "/spec/containers/0/image", json!("")),
            422,
            "image",
        ),
        post(TJS, tj(json!(0)), 422, "replicas"),
        post(
            "/api/v1/namespaces/nope/pods",
            pod("p"),
            404,
            "namespaces \"nope\" not found",
        ),
        case(
            M::POST,
            "/api/v1/namespaces/default/configmaps",
            JSON,
            huge,
            413,
            "too large",
        ),
        case(
            M::POST,
            PODS,
            "text/plain",
            pod("p").to_string(),
            415,
            "unknown format",
        ),
        case(
            M::POST,
            PODS,
            "application/merge-patch+json",
            pod("p").to_string(),
            415,
            "PATCH",
        ),
        post(&format!("{PODS}?dryRun=Maybe"), pod("p"), 400, "dryRun"),
        post(&exists, pod("exists"), 405, "collection"),
        get(
            &format!("{PODS}?labelSelector=app%20in%20prod"),
            400,
            "labelSelector",
        ),
        get(&format!("{PODS}?labelSelector=a%20b%3Dc"), 400, "label key"),
        get(
            &format!("{PODS}?labelSelector=env%20in%20(a"),
            400,
            "parentheses",
        ),
        get(
            &format!("{PODS}?labelSelector=app%3Dbad%20value"),
            400,
            "label value",
        ),
        get(
            &format!("{PODS}?fieldSelector=spec.bogus%3D1"),
            400,
            "field label not supported",
        ),
        get(
            &format!("{PODS}?fieldSelector=nonsense"),
            400,
            "field=value",
        ),
        get(&format!("{PODS}?limit=-1"), 400, "limit"),
        get(&format!("{PODS}?limit=abc"), 400, "limit"),
        get(
            &format!("{PODS}?resourceVersion=abc"),
            400,
            "resource version",
        ),
        get(&format!("{PODS}?continue=garbage"), 400, "continue"),
        get(&format!("{PODS}?watch=maybe"), 400, "watch"),
        get(
            &format!("{PODS}?watch=true&timeoutSeconds=soon"),
            400,
            "timeoutSeconds",
        ),
        get(
            &format!("{PODS}?watch=true&resourceVersion=x1"),
            400,
            "resource version",
        ),
        get("/api/v1/namespaces/default/widgets", 404, "could not find"),
        get("/apis/nope.dev/v1", 404, "could not find"),
        get("/api/v2/pods", 404, "could not find"),
        get(&format!("{PODS}/nope"), 404, "pods \"nope\" not found"),
        get(&format!("{exists}/attach"), 404, "subresource"),
        get(
            &format!("{exists}/log"),
            400,
            "does not have a host assigned",
        ),
        get("/api/v1/namespaces/default/nodes", 404, "could not find"),
        case(
            M::PUT,
            &exists,
            JSON,
            with(pod("exists"), "/metadata/resourceVersion", json!("abc")).to_string(),
            400,
            "resource version",
        ),
        case(
            M::PUT,
            &exists,
            JSON,
            pod("other").to_string(),
            400,
            "does not match",
        ),
        case(
            M::PUT,
            &exists,
            JSON,
            with(pod("exists"), "/metadata/resourceVersion", json!("1")).to_string(),
            409,
            "modified",
        ),
        case(
            M::PUT,
            &format!("{PODS}/ghost"),
            JSON,
            pod("ghost").to_string(),
            404,
            "not found",
        ),
        case(
            M::PATCH,
            &exists,
            "application/json-patch+json",
            r#"{"op":"x"}"#,
            400,
            "JSON patch",
        ),
        case(
            M::PATCH,
            &exists,
            "application/json-patch+json",
            r#"[{"op":"test","path":"/metadata/name","value":"no"}]"#,
            400,
            "JSON patch failed",
        ),
        case(M::PATCH, &exists, JSON, "{}", 415, "PATCH needs"),
        case(
            M::PATCH,
            &exists,
            "application/strategic-merge-patch+json",
            "[1]",
            400,
            "must be a JSON object",
        ),
        case(
            M::PATCH,
            &exists,
            "application/strategic-merge-patch+json",
            r#"{"spec":{"containers":[{"image":"x"}]}}"#,
            400,
            "merge key",
        ),
        case(
            M::PATCH,
            &exists,
            "application/apply-patch+yaml",
            "kind: Pod",
            400,
            "fieldManager",
        ),
        case(
            M::PATCH,
            &exists,
            "application/merge-patch+json",
            r#"{"spec":{"containers":null}}"#,
            422,
            "spec.containers",
        ),
        case(
            M::DELETE,
            &format!("{exists}?propagationPolicy=Sometimes"),
            JSON,
            "",
            400,
            "propagationPolicy",
        ),
        case(
            M::DELETE,
            &exists,
            JSON,
            r#"{"preconditions":{"uid":"not-it"}}"#,
            409,
            "Precondition failed",
        ),
        case(
            M::DELETE,
            "/api/v1/namespaces/default",
            JSON,
            "",
            403,
            "may not be deleted",
        ),
        case(M::DELETE, PODS, JSON, "", 405, "collection"),
        case(M::PUT, "/api", JSON, "{}", 405, "not supported"),
    ];
    cases.push(Case {
        accept: "application/xml",
        ..get(PODS, 406, "media types")
    });
    cases.push(Case {
        accept: "application/vnd.kubernetes.protobuf",
        ..get(PODS, 406, "media types")
    });
    cases.push(Case {
        accept: "application/json;as=Table;v=v1;g=meta.k8s.io",
        ..get(
            &format!("{PODS}?includeObject=Everything"),
            400,
            "includeObject",
        )
    });
    cases
}

async fn malformed(backend: Backend) {
    let server = TestServer::start(backend).await.expect("server starts");
    let c = client();
    let created = c
        .post(server.at(PODS))
        .body(pod("exists").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let response = c
            .request(case.method.clone(), server.at(&case.path))
            .header("content-type", case.content_type)
            .header("accept", case.accept)
            .body(case.body)
            .send()
            .await
            .expect("request sent");
        let code = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let status: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = status["message"].as_str().unwrap_or_default();
        if code != case.code || status["kind"] != "Status" || !message.contains(case.needle) {
            failures.push(format!(
                "{} {}: got {code} {text:.300}, want {} containing {:?}",
                case.method, case.path, case.code, case.needle
            ));
        }
        assert!(
            code < 500,
            "{} {}: server error {code}: {text}",
            case.method,
            case.path
        );
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let version = c.get(server.at("/version")).send().await.unwrap();
    assert_eq!(version.status().as_u16(), 200, "the server still serves");
    let still = c
        .get(server.at(&format!("{PODS}/exists")))
        .send()
        .await
        .unwrap();
    assert_eq!(still.status().as_u16(), 200, "nothing lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_4xx_on_the_embedded_store() {
    malformed(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_4xx_on_etcd() {
    malformed(Backend::Etcd).await;
}
