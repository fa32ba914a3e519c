//! Tokens for workloads: on a TLS cluster every namespace gets a `default` ServiceAccount
//! and the `kube-root-ca.crt` ConfigMap, a new pod gets its account and the
//! `kube-api-access-*` projected volume, and the agent fills it with a token bound to the
//! pod. The official Python client, run inside a runc container, uses it in-cluster
//! (`load_incluster_config`: the mounted token and CA, `KUBERNETES_SERVICE_HOST/PORT`),
//! RBAC decides what the account may do, and the token stops working once the pod is gone.

mod tls_support;

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tls_support::*;

/// What the pod runs: who it is, what it may list, and its mounted files.
const SCRIPT: &str = r#"
from kubernetes import client, config
config.load_incluster_config()
me = client.AuthenticationV1Api().create_self_subject_review(client.V1SelfSubjectReview())
print("user", me.status.user_info.username)
pods = client.CoreV1Api().list_namespaced_pod("kube-system")
print("pods", ",".join(sorted(p.metadata.name for p in pods.items)))
try:
    client.CoreV1Api().list_namespaced_secret("kube-system")
    print("secrets listed")
except client.ApiException as e:
    print("secrets", e.status)
base = "/var/run/secrets/kubernetes.io/serviceaccount/"
print("namespace", open(base + "namespace").read())
print("token", open(base + "token").read())
"#;

/// The host's python3 with the Kubernetes client (scripts/setup.sh installs it); the
/// pod runs it from the `host` image.
fn python_with_client() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys, kubernetes; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 with the kubernetes client is needed (scripts/setup.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    mut done: impl FnMut(u16, &Value) -> bool,
) -> (u16, Value) {
    let mut last = (0, Value::Null);
    for _ in 0..600 {
        last = get(http, url, Some("tok-root")).await;
        if done(last.0, &last.1) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never got there; last {} {}", last.0, last.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_uses_its_mounted_token_in_cluster_until_it_is_deleted() {
    let python = python_with_client();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let url = server.url.clone();
    let http = client(&server, None);
    let (mut agent, agent_log) = start_agent(dir.path(), &server, "n1", "n1");
    assert!(wait_ready(&server, "n1").await, "the node is Ready");

    // Every namespace has the CA and a default account, a new one too.
    let ca = std::fs::read_to_string(server.data.join("pki/ca.crt")).unwrap();
    let ns = "/api/v1/namespaces";
    let (code, out) = send(
        &http,
        Method::POST,
        &format!("{url}{ns}"),
        Some("tok-root"),
        Some(("application/json", json!({"metadata": {"name": "ml"}}))),
    )
    .await;
    assert_eq!(code, 201, "{out}");
    for namespace in ["default", "kube-system", "ml"] {
        let map = format!("{url}{ns}/{namespace}/configmaps/kube-root-ca.crt");
        wait_for(&http, &map, |code, m| {
            code == 200 && m["data"]["ca.crt"] == ca.as_str()
        })
        .await;
        let account = format!("{url}{ns}/{namespace}/serviceaccounts/default");
        wait_for(&http, &account, |code, _| code == 200).await;
    }

    // The account may read pods of kube-system (the view role), not its secrets.
    let (code, out) = send(
        &http,
        Method::POST,
        &format!("{url}/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings"),
        Some("tok-root"),
        Some(("application/json", json!({
            "metadata": {"name": "default-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}],
        }))),
    )
    .await;
    assert_eq!(code, 201, "{out}");

    // kube-system is privileged: the pod may use the host network to reach the API.
    let pods = format!("{url}{ns}/kube-system/pods");
    let pod = |name: &str, extra: Value| {
        let mut spec = json!({
            "nodeName": "n1", "hostNetwork": true, "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "host", "command": [python, "-c", SCRIPT]}],
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"metadata": {"name": name}, "spec": spec})
    };
    let (code, created) = send(
        &http,
        Method::POST,
        &pods,
        Some("tok-root"),
        Some(("application/json", pod("incluster", json!({})))),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["serviceAccountName"], "default");
    let volume = &created["spec"]["volumes"][0];
    assert!(
        volume["name"]
            .as_str()
            .unwrap()
            .starts_with("kube-api-access-"),
        "{volume}"
    );
    assert_eq!(
        created["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );

    let (_, done) = wait_for(&http, &format!("{pods}/incluster"), |_, p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    })
    .await;
    let log = http
        .get(format!("{pods}/incluster/log"))
        .bearer_auth("tok-root")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let agent_text = || std::fs::read_to_string(&agent_log).unwrap_or_default();
    assert_eq!(
        done["status"]["phase"],
        "Succeeded",
        "pod log:\n{log}\nagent:\n{}",
        agent_text()
    );
    let line = |key: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key:?} line in:\n{log}"))
            .to_string()
    };
    assert_eq!(line("user"), "system:serviceaccount:kube-system:default");
    assert!(line("pods").split(',').any(|p| p == "incluster"), "{log}");
    assert_eq!(line("secrets"), "403", "view does not read secrets");
    assert_eq!(line("namespace"), "kube-system");
    let token = line("token");

    // The token works from outside while its pod exists, and not after.
    let (code, _) = get(&http, &pods, Some(&token)).await;
    assert_eq!(code, 200);
    let (code, out) = send(
        &http,
        Method::DELETE,
        &format!("{pods}/incluster"),
        Some("tok-root"),
        None,
    )
    .await;
    assert!(code < 300, "{out}");
    wait_for(&http, &format!("{pods}/incluster"), |code, _| code == 404).await;
    let (code, _) = get(&http, &pods, Some(&token)).await;
    assert_eq!(
        code, 401,
        "a token bound to a deleted pod authenticates nobody"
    );

    // An unknown account is refused by name; automount off mounts nothing.
    let (code, out) = send(
        &http,
        Method::POST,
        &pods,
        Some("tok-root"),
        Some((
            "application/json",
            pod("stranger", json!({"serviceAccountName": "missing"})),
        )),
    )
    .await;
    assert_eq!(code, 403, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("kube-system/missing"),
        "{out}"
    );
    let (code, quiet) = send(
        &http,
        Method::POST,
        &format!("{pods}?dryRun=All"),
        Some("tok-root"),
        Some((
            "application/json",
            pod("quiet", json!({"automountServiceAccountToken": false})),
        )),
    )
    .await;
    assert_eq!(code, 201, "{quiet}");
    assert!(
        quiet["spec"]["volumes"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{quiet}"
    );
    let _ = (agent.kill(), agent.wait());
}
