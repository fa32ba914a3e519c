//! `cox server --secure-listen`: the API over TLS with authentication and deny-by-default
//! authorization, through the real binary, reqwest (rustls) and kubectl 1.37.
//!
//! - anonymous → 401, an unknown bearer token → 401, a client certificate from another CA →
//!   no session;
//! - a token user outside `system:masters` → 403 naming user, verb, resource and namespace,
//!   while discovery and `/version` are open to them;
//! - the admin kubeconfig (client certificate, CN kubernetes-admin, O system:masters)
//!   works with kubectl, `kubectl auth whoami` and `kubectl auth can-i` answer;
//! - RBAC: a Role and RoleBindings applied with kubectl grant alice exactly what they say,
//!   in their namespace only (a Role of her own, the default `edit` ClusterRole via her group);
//! - a restart keeps the CA and the admin credentials.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const TOKENS: &str = "tok-alice,alice,1001,\"dev,ml\"\ntok-root,root,1,system:masters\n";

struct Server {
    child: Child,
    url: String,
    data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Server {
    let data = dir.join("data");
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, TOKENS).unwrap();
    let log_path = dir.join(format!("server-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cox"))
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--secure-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--token-auth-file")
        .arg(&tokens)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("cox server starts");
    for _ in 0..600 {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(url) = text
            .lines()
            .find_map(|l| l.split("serving the API with TLS on ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
        {
            return Server {
                child,
                url: url.to_string(),
                data,
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("cox server exited ({status}):\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("cox server did not start");
}

/// A client trusting the cluster CA, with `identity` (PEM cert + key) when given.
fn client(server: &Server, identity: Option<&[u8]>) -> reqwest::Client {
    let ca = std::fs::read(server.data.join("pki/ca.crt")).unwrap();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem).unwrap());
    }
    builder.build().unwrap()
}

async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("a response");
    let code = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (code, body)
}

fn kubectl() -> String {
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    scripts
        .map(|d| Path::new(&d).join("kubectl"))
        .filter(|p| p.exists())
        .map_or_else(|| "kubectl".to_string(), |p| p.display().to_string())
}

fn run_kubectl(kubeconfig: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs (scripts/setup.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_authenticates_and_denies_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let pods = format!("{}/api/v1/namespaces/default/pods", server.url);
    let anonymous = client(&server, None);

    let (code, body) = get(&anonymous, &pods, None).await;
    assert_eq!((code, body["reason"].as_str()), (401, Some("Unauthorized")));
    let (code, _) = get(&anonymous, &pods, Some("tok-nobody")).await;
    assert_eq!(code, 401, "a token nobody issued");

    let (code, body) = get(&anonymous, &pods, Some("tok-alice")).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in \
         the namespace \"default\""
    );
    let (code, _) = get(
        &anonymous,
        &format!("{}/version", server.url),
        Some("tok-alice"),
    )
    .await;
    assert_eq!(code, 200, "discovery is open to every authenticated user");
    let (code, body) = get(
        &anonymous,
        &format!("{}/api/v1/nodes/gpu-1", server.url),
        Some("tok-alice"),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "nodes \"gpu-1\" is forbidden: User \"alice\" cannot get resource \"nodes\" in API \
         group \"\" at the cluster scope"
    );
    let (code, body) = get(&anonymous, &pods, Some("tok-root")).await;
    assert_eq!((code, body["kind"].as_str()), (200, Some("PodList")));

    // The admin kubeconfig's client certificate, through reqwest and through kubectl.
    let admin = {
        let pki = server.data.join("pki");
        let mut pem = std::fs::read(pki.join("admin.crt")).unwrap();
        pem.extend(std::fs::read(pki.join("admin.key")).unwrap());
        client(&server, Some(&pem))
    };
    let (code, _) = get(&admin, &pods, None).await;
    assert_eq!(code, 200);
    let kubeconfig = server.data.join("admin.kubeconfig");
    let (rc, out) = run_kubectl(&kubeconfig, &["get", "namespaces", "-o", "name"]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("namespace/default"), "{out}");
    let (rc, out) = run_kubectl(&kubeconfig, &["auth", "whoami"]);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("kubernetes-admin") && out.contains("system:masters"),
        "{out}"
    );
    let (rc, out) = run_kubectl(
        &kubeconfig,
        &["auth", "can-i", "delete", "pods", "-n", "ml"],
    );
    assert_eq!((rc, out.trim()), (0, "yes"));

    // alice, through kubectl with her token: can-i says no, and why a get fails.
    let alice = dir.path().join("alice.kubeconfig");
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let users = text.find("users:").unwrap();
    let contexts = text.find("contexts:").unwrap();
    let alice_text = format!(
        "{}users:\n- name: admin\n  user:\n    token: tok-alice\n{}",
        &text[..users],
        &text[contexts..]
    );
    std::fs::write(&alice, alice_text).unwrap();
    let (rc, out) = run_kubectl(&alice, &["auth", "can-i", "list", "pods"]);
    assert_eq!((rc, out.trim()), (1, "no"));
    let (rc, out) = run_kubectl(&alice, &["get", "pods"]);
    assert_ne!(rc, 0);
    assert!(
        out.contains("User \"alice\" cannot list resource \"pods\""),
        "{out}"
    );

    // RBAC: a Role bound to alice in `ml` lets her read pods there and nowhere else; the
    // default `edit` ClusterRole bound to her group `dev` in `ml` lets her write configmaps
    // there.
    let ml_pods = format!("{}/api/v1/namespaces/ml/pods", server.url);
    let (code, _) = get(&anonymous, &ml_pods, Some("tok-alice")).await;
    assert_eq!(code, 403, "no binding yet");
    let rbac = dir.path().join("rbac.yaml");
    std::fs::write(&rbac, RBAC_OBJECTS).unwrap();
    let (rc, out) = run_kubectl(&kubeconfig, &["apply", "-f", rbac.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}");
    let (code, body) = get(&anonymous, &ml_pods, Some("tok-alice")).await;
    assert_eq!(
        (code, body["kind"].as_str()),
        (200, Some("PodList")),
        "{body}"
    );
    let (code, _) = get(&anonymous, &pods, Some("tok-alice")).await;
    assert_eq!(code, 403, "the Role binds in ml only");
    let (rc, out) = run_kubectl(
        &alice,
        &["auth", "can-i", "create", "configmaps", "-n", "ml"],
    );
    assert_eq!((rc, out.trim()), (0, "yes"));
    let (rc, out) = run_kubectl(
        &alice,
        &["auth", "can-i", "create", "secrets", "-n", "default"],
    );
    assert_eq!((rc, out.trim()), (1, "no"));
    let notes = dir.path().join("notes.yaml");
    std::fs::write(
        &notes,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n",
    )
    .unwrap();
    let (rc, out) = run_kubectl(
        &alice,
        &["apply", "-n", "ml", "-f", notes.to_str().unwrap()],
    );
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = run_kubectl(
        &alice,
        &["apply", "-n", "default", "-f", notes.to_str().unwrap()],
    );
    assert_ne!(rc, 0, "{out}");
    let (rc, out) = run_kubectl(&alice, &["-n", "ml", "delete", "pod", "nothing-here"]);
    assert!(
        out.contains("NotFound") || out.contains("not found"),
        "{rc} {out}"
    );

    // A certificate from another CA proves nothing: the handshake refuses it.
    let stranger = {
        let other = dir.path().join("other-pki");
        let pki =
            coxswain_control_plane::apiserver::auth::pki::ClusterPki::load_or_create(&other, &[])
                .unwrap();
        let mut pem = pki.admin.cert_pem.into_bytes();
        pem.extend(pki.admin.key_pem.into_bytes());
        client(&server, Some(&pem))
    };
    let refused = stranger.get(&pods).send().await;
    assert!(
        refused.is_err() || refused.as_ref().unwrap().status() == 401,
        "{refused:?}"
    );

    // A restart keeps the CA and the admin's credentials.
    let ca = std::fs::read(server.data.join("pki/ca.crt")).unwrap();
    drop(server);
    let server = start(dir.path());
    assert_eq!(std::fs::read(server.data.join("pki/ca.crt")).unwrap(), ca);
    let (rc, out) = run_kubectl(
        &kubeconfig_of(&server),
        &["get", "namespaces", "-o", "name"],
    );
    assert_eq!(rc, 0, "{out}");
}

const RBAC_OBJECTS: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: ml}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: ml}
rules:
- {apiGroups: [\"\"], resources: [pods], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads-pods, namespace: ml}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: Role, name: pod-reader, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dev-edits, namespace: ml}
subjects: [{kind: Group, name: dev, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: edit, apiGroup: rbac.authorization.k8s.io}
";

fn kubeconfig_of(server: &Server) -> PathBuf {
    server.data.join("admin.kubeconfig")
}

/// A request with a JSON body; the status code and body back.
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, Value)>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some((content_type, body)) = body {
        request = request
            .header("content-type", content_type)
            .body(body.to_string());
    }
    let response = request.send().await.expect("a response");
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_reaches_only_its_own_node_pods_and_secrets() {
    use reqwest::Method;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let url = &server.url;
    let root = client(&server, None);
    let admin = |method, path: &str, body: Value| {
        let root = root.clone();
        let url = format!("{url}{path}");
        let path = path.to_string();
        async move {
            let (code, out) = send(
                &root,
                method,
                &url,
                Some("tok-root"),
                Some(("application/json", body)),
            )
            .await;
            assert!(code < 300, "{path}: {code} {out}");
        }
    };
    for node in ["node-a", "node-b"] {
        admin(
            Method::POST,
            "/api/v1/nodes",
            json!({"metadata": {"name": node}}),
        )
        .await;
        let (pod, secret) = (format!("pod-{node}"), format!("secret-{node}"));
        admin(
            Method::POST,
            "/api/v1/namespaces/default/secrets",
            json!({"metadata": {"name": secret}, "stringData": {"k": "v"}}),
        )
        .await;
        admin(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            json!({"metadata": {"name": pod}, "spec": {
                "nodeName": node,
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "s", "secret": {"secretName": secret}}],
            }}),
        )
        .await;
    }
    // Node A's own certificate, issued by the cluster CA as the join would.
    let pki = coxswain_control_plane::apiserver::auth::pki::ClusterPki::load_or_create(
        &server.data.join("pki"),
        &[],
    )
    .unwrap();
    let issued = pki
        .issue_client("system:node:node-a", &["system:nodes".to_string()])
        .unwrap();
    let node_a = client(
        &server,
        Some(format!("{}{}", issued.cert_pem, issued.key_pem).as_bytes()),
    );
    let merge = "application/merge-patch+json";
    let call = |method: Method, path: &str, body: Option<Value>| {
        let node_a = node_a.clone();
        let url = format!("{url}{path}");
        async move { send(&node_a, method, &url, None, body.map(|b| (merge, b))).await }
    };
    let labels = json!({"metadata": {"labels": {"seen": "yes"}}});
    let phase = json!({"status": {"phase": "Running"}});

    let (code, body) = call(Method::PATCH, "/api/v1/nodes/node-b", Some(labels.clone())).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("User \"system:node:node-a\" cannot patch resource \"nodes\""),
        "{body}"
    );
    let pods = "/api/v1/namespaces/default/pods";
    let (code, _) = call(
        Method::PATCH,
        &format!("{pods}/pod-node-b/status"),
        Some(phase.clone()),
    )
    .await;
    assert_eq!(code, 403, "a pod bound to node B");
    let (code, _) = call(
        Method::GET,
        "/api/v1/namespaces/default/secrets/secret-node-b",
        None,
    )
    .await;
    assert_eq!(code, 403, "a secret of a pod on node B");
    let (code, _) = call(Method::GET, &format!("{pods}/pod-node-b"), None).await;
    assert_eq!(code, 403);
    let (code, _) = call(Method::DELETE, &format!("{pods}/pod-node-b"), None).await;
    assert_eq!(code, 403);
    let (code, _) = call(Method::GET, "/api/v1/namespaces/default/secrets", None).await;
    assert_eq!(code, 403, "no listing secrets");

    let (code, body) = call(Method::PATCH, "/api/v1/nodes/node-a", Some(labels)).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = call(
        Method::PATCH,
        &format!("{pods}/pod-node-a/status"),
        Some(phase),
    )
    .await;
    assert_eq!(
        (code, body["status"]["phase"].as_str()),
        (200, Some("Running")),
        "{body}"
    );
    let (code, body) = call(
        Method::GET,
        "/api/v1/namespaces/default/secrets/secret-node-a",
        None,
    )
    .await;
    assert_eq!(
        (code, body["kind"].as_str()),
        (200, Some("Secret")),
        "{body}"
    );
    let (code, _) = call(Method::GET, pods, None).await;
    assert_eq!(code, 200, "nodes list pods (to find theirs)");
    let (code, _) = call(Method::GET, "/api/v1/nodes", None).await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_tokens_authenticate_until_they_expire() {
    use reqwest::Method;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let token = create_token(&server, "1h");
    let (id, secret) = token.split_once('.').expect("id.secret");
    assert_eq!((id.len(), secret.len()), (6, 16), "{token}");

    let anonymous = client(&server, None);
    let version = format!("{}/version", server.url);
    let (code, _) = get(&anonymous, &version, Some(&token)).await;
    assert_eq!(code, 200, "a fresh bootstrap token authenticates");
    let pods = format!("{}/api/v1/namespaces/default/pods", server.url);
    let (code, body) = get(&anonymous, &pods, Some(&token)).await;
    assert_eq!(code, 403);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&format!("User \"system:bootstrap:{id}\"")),
        "{body}"
    );
    let wrong = format!("{id}.{}", "0".repeat(16));
    let (code, _) = get(&anonymous, &version, Some(&wrong)).await;
    assert_eq!(code, 401, "the right id with the wrong secret");

    // A token that expired a minute ago, written as kubeadm writes them.
    let expired = json!({
        "metadata": {"name": "bootstrap-token-old123", "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "token-id": "old123", "token-secret": "0123456789abcdef",
            "usage-bootstrap-authentication": "true",
            "expiration": (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60)).to_string(),
        },
    });
    let (code, body) = send(
        &anonymous,
        Method::POST,
        &format!("{}/api/v1/namespaces/kube-system/secrets", server.url),
        Some("tok-root"),
        Some(("application/json", expired)),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = get(&anonymous, &version, Some("old123.0123456789abcdef")).await;
    assert_eq!((code, body["reason"].as_str()), (401, Some("Unauthorized")));
}

/// `cox agent` for `node` dialing the TLS listener with `credentials` (flags), its log.
fn spawn_agent(
    dir: &Path,
    server: &Server,
    node: &str,
    credentials: &[String],
) -> (Child, PathBuf) {
    let log = dir.join(format!("agent-{node}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_cox"))
        .args([
            "agent",
            "--server",
            &server.url,
            "--node-name",
            node,
            "--root",
        ])
        .arg(dir.join(format!("agent-{node}")))
        .arg("--ca-file")
        .arg(server.data.join("pki/ca.crt"))
        .args(credentials)
        .args([
            "--runtime",
            "runc",
            "--node-ip",
            "127.0.0.1",
            "--logs-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--cgroup-root",
            &format!("cox-tls-{}-{node}", std::process::id()),
        ])
        .args(["--no-cni", "--no-devices"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("cox agent starts");
    (child, log)
}

/// `cox agent` for `node` with a certificate the cluster CA issued to `cert_for`.
fn start_agent(dir: &Path, server: &Server, node: &str, cert_for: &str) -> (Child, PathBuf) {
    let pki = coxswain_control_plane::apiserver::auth::pki::ClusterPki::load_or_create(
        &server.data.join("pki"),
        &[],
    )
    .unwrap();
    let issued = pki
        .issue_client(
            &format!("system:node:{cert_for}"),
            &["system:nodes".to_string()],
        )
        .unwrap();
    let files = dir.join(format!("{node}-tls"));
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("node.crt"), &issued.cert_pem).unwrap();
    std::fs::write(files.join("node.key"), &issued.key_pem).unwrap();
    let flag = |name: &str, file: &str| [name.to_string(), files.join(file).display().to_string()];
    let credentials = [
        flag("--client-cert", "node.crt"),
        flag("--client-key", "node.key"),
    ]
    .concat();
    spawn_agent(dir, server, node, &credentials)
}

/// A bootstrap token from `cox token create` (plain loopback kubeconfig, as an admin).
fn create_token(server: &Server, ttl: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cox"))
        .args(["token", "create", "--ttl", ttl, "--kubeconfig"])
        .arg(server.data.join("kubeconfig"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Waits until node `name` is Ready, as the admin sees it.
async fn wait_ready(server: &Server, name: &str) -> bool {
    let root = client(server, None);
    let url = format!("{}/api/v1/nodes/{name}", server.url);
    for _ in 0..300 {
        let (code, node) = get(&root, &url, Some("tok-root")).await;
        if code == 200
            && node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_joins_over_tls_with_its_node_certificate_and_only_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let root = client(&server, None);
    let (mut agent, _) = start_agent(dir.path(), &server, "tls-node", "tls-node");
    // Node B's certificate, used to pose as node "victim".
    let (mut impostor, impostor_log) = start_agent(dir.path(), &server, "victim", "node-b");
    let ready = wait_ready(&server, "tls-node").await;
    let (code, _) = get(
        &root,
        &format!("{}/api/v1/nodes/victim", server.url),
        Some("tok-root"),
    )
    .await;
    let impostor_text = std::fs::read_to_string(&impostor_log).unwrap_or_default();
    let _ = (agent.kill(), agent.wait(), impostor.kill(), impostor.wait());
    assert!(
        ready,
        "the agent registered over TLS and its node became Ready"
    );
    assert_eq!(
        code, 404,
        "node B's certificate registered no node \"victim\""
    );
    assert!(
        impostor_text.contains("may not act for node"),
        "the impostor was told why:\n{impostor_text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_a_bootstrap_token_and_cannot_ask_for_more() {
    use base64::Engine;
    use reqwest::Method;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let token = create_token(&server, "24h");

    let root = dir.path().join("agent-joiner");
    let (mut agent, log) = spawn_agent(
        dir.path(),
        &server,
        "joiner",
        &["--bootstrap-token".to_string(), token.clone()],
    );
    let ready = wait_ready(&server, "joiner").await;
    let _ = (agent.kill(), agent.wait());
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        ready,
        "the node joined with the token and became Ready:\n{log}"
    );
    // The agent keeps its own key (0600) and the certificate the CA signed for it.
    use std::os::unix::fs::PermissionsExt;
    let key = std::fs::metadata(root.join("pki/node.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    let cert = std::fs::read(root.join("pki/node.crt")).unwrap();
    let (_, block) = x509_parser::pem::parse_x509_pem(&cert).unwrap();
    let user =
        coxswain_control_plane::apiserver::auth::user_of_certificate(&block.contents).unwrap();
    assert_eq!(
        (user.name.as_str(), user.groups.as_slice()),
        ("system:node:joiner", &["system:nodes".to_string()][..])
    );

    // The same token asking for a certificate in system:masters gets none; an honest
    // request sent after it is signed, so the approver has seen and passed the greedy one.
    let http = client(&server, None);
    let csrs = format!(
        "{}/apis/certificates.k8s.io/v1/certificatesigningrequests",
        server.url
    );
    for (name, organization) in [("greedy", "system:masters"), ("honest", "system:nodes")] {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:joiner");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, organization);
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        let body = json!({
            "metadata": {"name": name},
            "spec": {
                "request": base64::engine::general_purpose::STANDARD.encode(pem),
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "usages": ["digital signature", "client auth"],
                // Claims the server must overwrite with who really asked.
                "username": "system:node:joiner", "groups": ["system:nodes"],
            },
        });
        let (code, created) = send(
            &http,
            Method::POST,
            &csrs,
            Some(&token),
            Some(("application/json", body)),
        )
        .await;
        assert_eq!(code, 201, "{created}");
        assert_eq!(
            created["spec"]["username"],
            format!("system:bootstrap:{}", token.split('.').next().unwrap()),
            "the server, not the client, says who asked"
        );
    }
    let mut signed = false;
    for _ in 0..300 {
        let (_, honest) = get(&http, &format!("{csrs}/honest"), Some(&token)).await;
        if honest["status"]["certificate"].is_string() {
            signed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(signed, "the honest request was signed");
    let (code, greedy) = get(&http, &format!("{csrs}/greedy"), Some(&token)).await;
    assert_eq!(code, 200);
    assert!(greedy["status"]["certificate"].is_null(), "{greedy}");
    assert!(
        greedy["status"]["conditions"].is_null(),
        "not approved: {greedy}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_from_kubectl_create_token_act_as_their_account() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let kubeconfig = kubeconfig_of(&server);
    let objects = dir.path().join("bot.yaml");
    std::fs::write(
        &objects,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: build-bot, namespace: default}\n\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
         metadata: {name: build-bot-view, namespace: default}\n\
         subjects: [{kind: ServiceAccount, name: build-bot, namespace: default}]\n\
         roleRef: {kind: ClusterRole, name: view, apiGroup: rbac.authorization.k8s.io}\n",
    )
    .unwrap();
    let (rc, out) = run_kubectl(&kubeconfig, &["apply", "-f", objects.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}");
    // kubectl sends the TokenRequest as Kubernetes protobuf.
    let (rc, out) = run_kubectl(
        &kubeconfig,
        &["create", "token", "build-bot", "--duration", "20m"],
    );
    assert_eq!(rc, 0, "{out}");
    let token = out.trim().to_string();
    assert_eq!(token.matches('.').count(), 2, "a JWT: {token}");

    let http = client(&server, None);
    let pods = format!("{}/api/v1/namespaces/default/pods", server.url);
    let (code, body) = get(&http, &pods, Some(&token)).await;
    assert_eq!(
        (code, body["kind"].as_str()),
        (200, Some("PodList")),
        "{body}"
    );
    let secrets = format!("{}/api/v1/namespaces/default/secrets", server.url);
    let (code, body) = get(&http, &secrets, Some(&token)).await;
    assert_eq!(code, 403, "view reads no secrets");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("User \"system:serviceaccount:default:build-bot\""),
        "{body}"
    );
    let whoami = Command::new(kubectl())
        .args([
            "--server",
            &server.url,
            "--token",
            &token,
            "--certificate-authority",
        ])
        .arg(server.data.join("pki/ca.crt"))
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        "system:serviceaccount:default:build-bot",
        "{}",
        String::from_utf8_lossy(&whoami.stderr)
    );
    // A token for an account that does not exist is refused; a tampered one is not ours.
    let (rc, out) = run_kubectl(&kubeconfig, &["create", "token", "nobody"]);
    assert!(rc != 0 && out.contains("not found"), "{out}");
    let mut tampered = token.clone().into_bytes();
    let at = tampered.len() - 3;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let (code, _) = get(&http, &pods, Some(&String::from_utf8(tampered).unwrap())).await;
    assert_eq!(code, 401);
    // Deleting the account ends its tokens.
    let (rc, out) = run_kubectl(&kubeconfig, &["delete", "serviceaccount", "build-bot"]);
    assert_eq!(rc, 0, "{out}");
    let (code, _) = get(&http, &pods, Some(&token)).await;
    assert_eq!(code, 401, "the account is gone");
}
