//! The TLS test cluster of `server_tls.rs` and `node_join.rs`: `cox server --secure-listen`
//! with a static token file (`tok-alice`: alice in dev and ml; `tok-root`: system:masters),
//! clients trusting its CA, kubectl, and agents dialing it with a node certificate or a
//! bootstrap token.
#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

#[path = "../shared/kubectl_path.rs"]
mod kubectl_path;
pub use kubectl_path::kubectl_path as kubectl;

pub const TOKENS: &str = "tok-alice,alice,1001,\"dev,ml\"\ntok-root,root,1,system:masters\n";

pub struct Server {
    /// The server process.
    pub child: Child,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Its data directory (`pki/`, `kubeconfig`, `admin.kubeconfig`).
    pub data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(dir: &Path) -> Server {
    start_with(dir, &[])
}

/// [`start`] with more `cox server` flags.
pub fn start_with(dir: &Path, extra: &[&str]) -> Server {
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
        .args(extra)
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
pub fn client(server: &Server, identity: Option<&[u8]>) -> reqwest::Client {
    let ca = std::fs::read(server.data.join("pki/ca.crt")).unwrap();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem).unwrap());
    }
    builder.build().unwrap()
}

pub async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("a response");
    let code = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (code, body)
}

pub fn run_kubectl(kubeconfig: &Path, args: &[&str]) -> (i32, String) {
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

pub fn kubeconfig_of(server: &Server) -> PathBuf {
    server.data.join("admin.kubeconfig")
}

/// A copy of the admin kubeconfig whose user has only the bearer `token`.
pub fn token_kubeconfig(dir: &Path, server: &Server, token: &str) -> PathBuf {
    let text = std::fs::read_to_string(kubeconfig_of(server)).unwrap();
    let users = text.find("users:").unwrap();
    let contexts = text.find("contexts:").unwrap();
    let path = dir.join(format!("{token}.kubeconfig"));
    let user = format!("users:\n- name: admin\n  user:\n    token: {token}\n");
    std::fs::write(
        &path,
        format!("{}{user}{}", &text[..users], &text[contexts..]),
    )
    .unwrap();
    path
}

/// A request with a JSON body; the status code and body back.
pub async fn send(
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

/// `cox agent` for `node` dialing the TLS listener with `credentials` (flags), its log.
pub fn spawn_agent(
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
pub fn start_agent(dir: &Path, server: &Server, node: &str, cert_for: &str) -> (Child, PathBuf) {
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
pub fn create_token(server: &Server, ttl: &str) -> String {
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
pub async fn wait_ready(server: &Server, name: &str) -> bool {
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
