//! Approving and denying CertificateSigningRequests with `kubectl certificate approve|deny`
//! (kubectl 1.37, which sends the `approval` subresource as Kubernetes protobuf) against
//! `cox server --secure-listen`:
//!
//! - an administrator's approval of a request the controller leaves pending (a user's
//!   client certificate with O `system:masters`) gets it signed with the subject asked for,
//!   and that certificate then authenticates;
//! - an approved kubelet-client request for O `system:masters` is marked Failed, unsigned;
//! - a request created with an Approved condition and a certificate starts with neither;
//! - a denied request is never signed, cannot be approved afterwards (kubectl refuses, the
//!   server refuses a forced PUT: 422) and a status write cannot approve it;
//! - a user with RBAC `update` on `certificatesigningrequests/approval` but no `approve` on
//!   `signers` gets kube-apiserver's 403; `approve` on `signers` `kubernetes.io/*` lets her.

mod tls_support;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tls_support::*;

/// A PEM request for CN `cn`, O `orgs`, and its PEM key.
fn request(cn: &str, orgs: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    for o in orgs {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, *o);
    }
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    (pem, key.serialize_pem())
}

fn csr_yaml(name: &str, pem: &str) -> String {
    let request = base64::engine::general_purpose::STANDARD.encode(pem);
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\n\
         metadata:\n  name: {name}\nspec:\n  request: {request}\n  \
         signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n---\n"
    )
}

/// The request `name` as the admin reads it.
async fn read(server: &Server, name: &str) -> Value {
    let root = client(server, None);
    let url = format!(
        "{}/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}",
        server.url
    );
    let (code, body) = get(&root, &url, Some("tok-root")).await;
    assert_eq!(code, 200, "{body}");
    body
}

/// The PEM certificate of request `name`, once signed.
async fn signed(server: &Server, name: &str) -> String {
    for _ in 0..300 {
        let csr = read(server, name).await;
        if let Some(encoded) = csr["status"]["certificate"].as_str() {
            let der = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap();
            return String::from_utf8(der).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} was not signed: {}", read(server, name).await);
}

fn condition_types(csr: &Value) -> Vec<String> {
    csr["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["type"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_certificate_approve_signs_and_deny_refuses_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let kubeconfig = kubeconfig_of(&server);
    let (bob_pem, bob_key) = request("bob", &["system:masters"]);
    let (mallory_pem, _) = request("mallory", &["system:masters"]);
    let (node_pem, _) = request("system:node:gpu-9", &["system:nodes", "system:masters"]);
    let kubelet = csr_yaml("node-escalation", &node_pem).replace(
        "kubernetes.io/kube-apiserver-client\n",
        "kubernetes.io/kube-apiserver-client-kubelet\n",
    );
    let objects = dir.path().join("csrs.yaml");
    std::fs::write(
        &objects,
        csr_yaml("bob", &bob_pem) + &csr_yaml("mallory", &mallory_pem) + &kubelet,
    )
    .unwrap();
    let (rc, out) = run_kubectl(&kubeconfig, &["create", "-f", objects.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}");

    // A request created already approved (and signed) starts with neither.
    let (forged_pem, _) = request("eve", &["system:masters"]);
    let mut forged: serde_json::Value =
        yaml_serde::from_str(&csr_yaml("forged", &forged_pem).replace("---\n", "")).unwrap();
    forged["status"] = json!({
        "conditions": [{"type": "Approved", "status": "True", "reason": "Forged"}],
        "certificate": base64::engine::general_purpose::STANDARD.encode("forged"),
    });
    let collection = format!(
        "{}/apis/certificates.k8s.io/v1/certificatesigningrequests",
        server.url
    );
    let (code, body) = send(
        &client(&server, None),
        reqwest::Method::POST,
        &collection,
        Some("tok-root"),
        Some(("application/json", forged)),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(body["status"].is_null(), "{body}");

    // Deny mallory first: the controller handles requests in order, so once bob's later
    // approval is signed, mallory's denial has been seen too.
    let (rc, out) = run_kubectl(&kubeconfig, &["certificate", "deny", "mallory"]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("denied"), "{out}");
    // An approved kubelet-client request whose subject the signer refuses: Failed.
    let (rc, out) = run_kubectl(&kubeconfig, &["certificate", "approve", "node-escalation"]);
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = run_kubectl(&kubeconfig, &["certificate", "approve", "bob"]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("approved"), "{out}");

    let certificate = signed(&server, "bob").await;
    let (_, block) = x509_parser::pem::parse_x509_pem(certificate.as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&block.contents).unwrap();
    let cn: Vec<_> = cert.subject().iter_common_name().collect();
    let orgs: Vec<_> = cert.subject().iter_organization().collect();
    assert_eq!(cn[0].as_str().unwrap(), "bob");
    assert_eq!(orgs[0].as_str().unwrap(), "system:masters");
    let bob = read(&server, "bob").await;
    assert_eq!(condition_types(&bob), ["Approved"]);
    assert_eq!(bob["status"]["conditions"][0]["reason"], "KubectlApprove");
    // The certificate authenticates as bob, a master.
    let identity = format!("{certificate}{bob_key}");
    let as_bob = client(&server, Some(identity.as_bytes()));
    let (code, body) = get(&as_bob, &format!("{}/api/v1/namespaces", server.url), None).await;
    assert_eq!(code, 200, "{body}");

    let escalation = read(&server, "node-escalation").await;
    assert_eq!(
        condition_types(&escalation),
        ["Approved", "Failed"],
        "{escalation}"
    );
    assert_eq!(
        escalation["status"]["conditions"][1]["reason"],
        "SignerValidationFailure"
    );
    assert!(
        escalation["status"]["certificate"].is_null(),
        "{escalation}"
    );
    let forged = read(&server, "forged").await;
    assert!(forged["status"].is_null(), "{forged}");
    let mallory = read(&server, "mallory").await;
    assert_eq!(condition_types(&mallory), ["Denied"]);
    assert!(mallory["status"]["certificate"].is_null(), "{mallory}");
    // A denial stays: kubectl refuses to approve it, and a forced approval is 422.
    let (rc, out) = run_kubectl(&kubeconfig, &["certificate", "approve", "mallory"]);
    assert_ne!(rc, 0, "{out}");
    assert!(out.contains("is already Denied"), "{out}");
    let root = client(&server, None);
    let approval = format!(
        "{}/apis/certificates.k8s.io/v1/certificatesigningrequests/mallory/approval",
        server.url
    );
    let mut flipped = mallory.clone();
    flipped["status"]["conditions"] = json!([{"type": "Approved", "status": "True"}]);
    let (code, body) = send(
        &root,
        reqwest::Method::PUT,
        &approval,
        Some("tok-root"),
        Some(("application/json", flipped)),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("updates may not remove a condition of type \"Denied\""),
        "{body}"
    );
    let mut both = mallory.clone();
    both["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "Approved", "status": "True"}));
    let (code, body) = send(
        &root,
        reqwest::Method::PUT,
        &approval,
        Some("tok-root"),
        Some(("application/json", both.clone())),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Approved and Denied conditions are mutually exclusive"),
        "{body}"
    );
    // Nor does the status subresource approve.
    let (code, body) = send(
        &root,
        reqwest::Method::PUT,
        &approval.replace("/approval", "/status"),
        Some("tok-root"),
        Some(("application/json", both)),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(read(&server, "mallory").await["status"]["certificate"].is_null());
}

const APPROVAL_ONLY: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: csr-approval-writer}
rules:
- apiGroups: [certificates.k8s.io]
  resources: [certificatesigningrequests]
  verbs: [get, list]
- apiGroups: [certificates.k8s.io]
  resources: [certificatesigningrequests/approval]
  verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-csr-approval-writer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: csr-approval-writer}
subjects: [{kind: User, name: alice}]
";

const SIGNER_APPROVER: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kubernetes-io-approver}
rules:
- apiGroups: [certificates.k8s.io]
  resources: [signers]
  resourceNames: [kubernetes.io/*]
  verbs: [approve]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-kubernetes-io-approver}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubernetes-io-approver}
subjects: [{kind: User, name: alice}]
";

fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_needs_approve_on_the_signer_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let kubeconfig = kubeconfig_of(&server);
    let alice = token_kubeconfig(dir.path(), &server, "tok-alice");
    let (pem, _) = request("carol", &["dev"]);
    let carol = write(dir.path(), "carol.yaml", &csr_yaml("carol", &pem));
    let (rc, out) = run_kubectl(&kubeconfig, &["create", "-f", carol.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}");

    // Without any grant: RBAC refuses the get.
    let (rc, out) = run_kubectl(&alice, &["certificate", "approve", "carol"]);
    assert_ne!(rc, 0, "{out}");
    assert!(out.contains("User \"alice\" cannot get resource"), "{out}");

    // With update on the approval subresource only: the signer check refuses.
    let grant = write(dir.path(), "approval.yaml", APPROVAL_ONLY);
    let (rc, out) = run_kubectl(&kubeconfig, &["apply", "-f", grant.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = run_kubectl(&alice, &["certificate", "approve", "carol"]);
    assert_ne!(rc, 0, "{out}");
    assert!(
        out.contains(
            "certificatesigningrequests.certificates.k8s.io \"carol\" is forbidden: user not \
             permitted to approve requests with signerName \"kubernetes.io/kube-apiserver-client\""
        ),
        "{out}"
    );
    assert!(condition_types(&read(&server, "carol").await).is_empty());

    // With approve on every kubernetes.io signer as well: approved and signed.
    let grant = write(dir.path(), "signers.yaml", SIGNER_APPROVER);
    let (rc, out) = run_kubectl(&kubeconfig, &["apply", "-f", grant.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = run_kubectl(&alice, &["certificate", "approve", "carol"]);
    assert_eq!(rc, 0, "{out}");
    let certificate = signed(&server, "carol").await;
    assert!(certificate.starts_with("-----BEGIN CERTIFICATE-----"));
}
