//! `cox apply/get/describe/delete` against a `cox server` started from the built binary.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn cox(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cox"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("cox runs")
}

fn ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = cox(kubeconfig, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "cox {args:?} failed: {text}");
    text
}

const MANIFESTS: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec: {containers: [{name: main, image: busybox}]}
---
apiVersion: coxswain.dev/v1alpha1
kind: TrainingJob
metadata: {name: llm}
spec:
  replicaGroups:
  - name: worker
    replicas: 2
    gpusPerReplica: 4
    template: {spec: {containers: [{name: t, image: trainer}]}}
";

#[test]
fn verbs_round_trip_through_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_cox"))
        .args(["server", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cox server starts");
    let kubeconfig = dir.path().join("data/kubeconfig");
    for _ in 0..200 {
        if kubeconfig.exists() && cox(&kubeconfig, &["get", "ns"]).status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let manifests = dir.path().join("jobs.yaml");
    std::fs::write(&manifests, MANIFESTS).unwrap();
    let file = manifests.to_str().unwrap();

    let applied = ok(&kubeconfig, &["apply", "-f", file]);
    assert!(
        applied.contains("pod/web created")
            && applied.contains("trainingjob.coxswain.dev/llm created"),
        "{applied}"
    );
    assert!(ok(&kubeconfig, &["apply", "-f", file]).contains("pod/web configured"));
    let table = ok(&kubeconfig, &["get", "tj"]);
    assert!(
        table.contains("STATE") && table.contains("llm") && table.contains("8"),
        "{table}"
    );
    assert_eq!(
        ok(&kubeconfig, &["get", "po", "-l", "app=web", "-o", "name"]).trim(),
        "pod/web"
    );
    assert!(ok(&kubeconfig, &["get", "pods", "-A"]).contains("NAMESPACE"));
    assert!(ok(&kubeconfig, &["get", "tj", "llm", "-o", "yaml"]).contains("gpusPerReplica: 4"));
    assert!(ok(&kubeconfig, &["describe", "tj", "llm"]).contains("Events:"));

    std::fs::write(
        &manifests,
        MANIFESTS.replace("replicas: 2", "replicas: two"),
    )
    .unwrap();
    let bad = cox(&kubeconfig, &["apply", "-f", file]);
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && message.contains("document 2") && message.contains("replicas"),
        "{message}"
    );
    let unknown = cox(&kubeconfig, &["get", "widgets"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("widgets"));

    assert!(ok(&kubeconfig, &["delete", "tj", "llm"]).contains("deleted"));
    assert!(ok(&kubeconfig, &["delete", "pod", "web"]).contains("deleted"));
    assert!(!cox(&kubeconfig, &["get", "pod", "web"]).status.success());
    server.kill().ok();
    server.wait().ok();
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    // `cox ... | head`: the reader has gone before cox prints.
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_cox"))
        .arg("version")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("cox runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "no panic message: {stderr}");
}
