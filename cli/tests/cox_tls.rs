//! The `cox` CLI's own verbs (`get`, `apply`, `describe`, `logs`, `top`, `delete`) against
//! `cox server --secure-listen`, with kubeconfigs as kubectl reads them: the admin
//! kubeconfig (CA, client certificate and key inline), the same credentials as files
//! relative to the kubeconfig, and bearer tokens — a token user outside RBAC gets one clear
//! 403 line, an unknown token one 401 line, and a kubeconfig without a CA for an https
//! server is refused before any request.

mod tls_support;

use std::path::Path;
use std::process::Command;

use tls_support::*;

/// `cox <args> --kubeconfig <kubeconfig>`: exit code, stdout, stderr.
fn cox(kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cox"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .output()
        .expect("cox runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const CONFIG_MAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {mode: tls}
";

#[test]
fn cox_verbs_work_over_tls_with_the_admin_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let admin = kubeconfig_of(&server);

    let (rc, out, err) = cox(&admin, &["get", "namespaces"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("default ")), "{out}");
    let manifest = dir.path().join("settings.yaml");
    std::fs::write(&manifest, CONFIG_MAP).unwrap();
    let (rc, out, err) = cox(&admin, &["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, err) = cox(&admin, &["describe", "configmap", "settings"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("mode: tls"), "{out}");
    let (rc, out, err) = cox(&admin, &["top", "nodes"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.starts_with("NAME"), "{out}");
    // The log request reaches the server and is answered: the pod does not exist.
    let (rc, _, err) = cox(&admin, &["logs", "nothing"]);
    assert_ne!(rc, 0);
    assert!(err.contains("pods \"nothing\" not found"), "{err}");
    let (rc, _, err) = cox(&admin, &["delete", "configmap", "settings"]);
    assert_eq!(rc, 0, "{err}");

    // The same credentials as files, relative to the kubeconfig's folder.
    let files = server.data.join("files.kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: pki/ca.crt\n\
         users:\n- name: u\n  user:\n    client-certificate: pki/admin.crt\n    client-key: pki/admin.key\n\
         contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        server.url
    );
    std::fs::write(&files, &text).unwrap();
    let (rc, out, err) = cox(&files, &["get", "namespaces"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("kube-system"), "{out}");

    // No CA for an https server: refused, naming what is missing.
    let no_ca = server.data.join("no-ca.kubeconfig");
    std::fs::write(
        &no_ca,
        text.replace("    certificate-authority: pki/ca.crt\n", ""),
    )
    .unwrap();
    let (rc, _, err) = cox(&no_ca, &["get", "namespaces"]);
    assert_ne!(rc, 0);
    assert!(err.contains("has no certificate-authority-data"), "{err}");
}

#[test]
fn token_users_get_what_rbac_grants_and_one_line_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let root = token_kubeconfig(dir.path(), &server, "tok-root");
    let (rc, out, err) = cox(&root, &["get", "pods", "-A"]);
    assert_eq!(rc, 0, "{out}{err}");

    let alice = token_kubeconfig(dir.path(), &server, "tok-alice");
    let (rc, out, err) = cox(&alice, &["get", "pods"]);
    assert_ne!(rc, 0, "{out}");
    assert_eq!(
        err.trim_end(),
        "error: pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \
         \"\" in the namespace \"default\""
    );

    let unknown = token_kubeconfig(dir.path(), &server, "tok-nobody");
    let (rc, _, err) = cox(&unknown, &["get", "pods"]);
    assert_ne!(rc, 0);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: Unauthorized"), "{err}");
}
