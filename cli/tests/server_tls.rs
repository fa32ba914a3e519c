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
//! - bootstrap tokens authenticate until they expire; service-account tokens from
//!   `kubectl create token` act as their account. Node certificates and joining: `node_join.rs`.

mod tls_support;

use std::process::Command;

use tls_support::*;

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
    let alice = token_kubeconfig(dir.path(), &server, "tok-alice");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_bound_to_a_pod_or_secret_end_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let kubeconfig = kubeconfig_of(&server);
    let objects = dir.path().join("bound.yaml");
    std::fs::write(
        &objects,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: bound-bot, namespace: default}\n\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
         metadata: {name: bound-bot-view, namespace: default}\n\
         subjects: [{kind: ServiceAccount, name: bound-bot, namespace: default}]\n\
         roleRef: {kind: ClusterRole, name: view, apiGroup: rbac.authorization.k8s.io}\n\
         ---\napiVersion: v1\nkind: Pod\nmetadata: {name: holder, namespace: default}\n\
         spec: {serviceAccountName: bound-bot, containers: [{name: c, image: busybox}]}\n\
         ---\napiVersion: v1\nkind: Pod\nmetadata: {name: stranger, namespace: default}\n\
         spec: {containers: [{name: c, image: busybox}]}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {name: anchor, namespace: default}\n\
         stringData: {k: v}\n",
    )
    .unwrap();
    let (rc, out) = run_kubectl(&kubeconfig, &["apply", "-f", objects.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}");
    let create = |args: &[&str]| {
        let mut all = vec!["create", "token", "bound-bot"];
        all.extend_from_slice(args);
        run_kubectl(&kubeconfig, &all)
    };
    // kubectl sends boundObjectRef in its protobuf TokenRequest.
    let (rc, pod_token) = create(&[
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "holder",
    ]);
    assert_eq!(rc, 0, "{pod_token}");
    let pod_token = pod_token.trim().to_string();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            pod_token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "holder", "{claims}");
    assert!(
        claims["kubernetes.io"]["pod"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );
    let (rc, secret_token) = create(&[
        "--bound-object-kind",
        "Secret",
        "--bound-object-name",
        "anchor",
    ]);
    assert_eq!(rc, 0, "{secret_token}");
    let secret_token = secret_token.trim().to_string();

    // What kube-apiserver refuses: a pod running as another account, a missing object, a
    // stale uid, a kind tokens cannot be bound to.
    let (rc, out) = create(&[
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "stranger",
    ]);
    assert!(
        rc != 0 && out.contains("different serviceaccount name"),
        "{out}"
    );
    let (rc, out) = create(&["--bound-object-kind", "Pod", "--bound-object-name", "ghost"]);
    assert!(rc != 0 && out.contains("pods \"ghost\" not found"), "{out}");
    let (rc, out) = create(&[
        "--bound-object-kind",
        "Secret",
        "--bound-object-name",
        "anchor",
        "--bound-object-uid",
        "0000",
    ]);
    assert!(rc != 0 && out.contains("does not match the UID"), "{out}");
    let (rc, out) = create(&["--bound-object-kind", "Node", "--bound-object-name", "n1"]);
    assert!(rc != 0 && out.contains("spec.boundObjectRef.kind"), "{out}");
    // Under kube-apiserver's 10 minutes: 422 naming the field.
    let (rc, out) = create(&["--duration", "5m"]);
    assert!(
        rc != 0 && out.contains("spec.expirationSeconds") && out.contains("less than 10 minutes"),
        "{out}"
    );

    let http = client(&server, None);
    let pods = format!("{}/api/v1/namespaces/default/pods", server.url);
    for token in [&pod_token, &secret_token] {
        let (code, body) = get(&http, &pods, Some(token)).await;
        assert_eq!(code, 200, "{body}");
    }
    let (rc, out) = run_kubectl(
        &kubeconfig,
        &["delete", "pod", "holder", "--grace-period=0", "--force"],
    );
    assert_eq!(rc, 0, "{out}");
    let (code, _) = get(&http, &pods, Some(&pod_token)).await;
    assert_eq!(code, 401, "the pod is gone, so is its token");
    let (code, _) = get(&http, &pods, Some(&secret_token)).await;
    assert_eq!(code, 200, "the secret-bound token lives on");
    let (rc, out) = run_kubectl(&kubeconfig, &["delete", "secret", "anchor"]);
    assert_eq!(rc, 0, "{out}");
    let (code, _) = get(&http, &pods, Some(&secret_token)).await;
    assert_eq!(code, 401, "the secret is gone, so is its token");
}
