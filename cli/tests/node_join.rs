//! Nodes over TLS (`cox server --secure-listen`): a node certificate reaches only its own
//! node's objects (node authorizer and node restriction), an agent joins with a node
//! certificate and only as itself, and an agent with only the CA and a bootstrap token gets
//! its certificate through a CertificateSigningRequest — a request for more is never signed.

mod tls_support;

use std::time::Duration;

use serde_json::Value;
use tls_support::*;

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
