//! `cox server --encryption-provider-config` and `cox reencrypt`, as an operator runs them: a
//! bad file stops the server with one line naming the field; a good one keeps secrets out of the
//! embedded store's file; after a key rotation `cox reencrypt` moves every secret to the new key,
//! so the server still reads them once the old key is removed.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const KEY1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
const CANARY: &str = "hunter2-canary-cli-5e1d";
const CANARY_BASE64: &str = "aHVudGVyMi1jYW5hcnktY2xpLTVlMWQ=";
const SECRETS: &str = "/api/v1/namespaces/default/secrets";

fn write_config(path: &Path, keys: &[(&str, &str)]) {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(name, secret)| json!({"name": name, "secret": secret}))
        .collect();
    let config = json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"],
                       "providers": [{"aesgcm": {"keys": keys}}, {"identity": {}}]}],
    });
    std::fs::write(path, config.to_string()).expect("writing the config");
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// `cox server` on `dir/data` with `config`; returns it and its URL once it answers.
async fn start(dir: &Path, config: &Path) -> (Child, String) {
    let port = free_port();
    let log = std::fs::File::create(dir.join(format!("server-{port}.log"))).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cox"))
        .args(["server", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--encryption-provider-config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("cox server starts");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{url}/version")).send().await
            && r.status().is_success()
        {
            return (child, url);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().ok();
    child.wait().ok();
    panic!("cox server at {url} did not become ready");
}

/// SIGTERM, then wait for the exit (the embedded store's file is unlocked after it).
async fn stop(mut server: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    for _ in 0..300 {
        if server.try_wait().expect("try_wait").is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().ok();
    server.wait().ok();
    panic!("cox server did not stop after SIGTERM");
}

fn store_file(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("data/store/store.redb")).expect("the embedded store's file")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_bad_encryption_config_stops_the_server_with_one_line_naming_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("encryption.yaml");
    write_config(&config, &[("key1", "MDEyMzQ1Njc4OWFi")]);
    let output = Command::new(env!("CARGO_BIN_EXE_cox"))
        .args(["server", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--encryption-provider-config"])
        .arg(&config)
        .output()
        .expect("cox server runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "resources[0].providers[0].aesgcm.keys[0].secret: must be 32 bytes base64 (got 12)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("--encryption-provider-config"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_encrypted_across_a_rotation_with_cox_reencrypt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("encryption.yaml");
    write_config(&config, &[("key1", KEY1)]);
    let (server, url) = start(dir.path(), &config).await;
    let client = reqwest::Client::new();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                        "data": {"password": CANARY_BASE64}});
    let response = client
        .post(format!("{url}{SECRETS}"))
        .json(&secret)
        .send()
        .await
        .expect("create");
    assert_eq!(response.status().as_u16(), 201);
    stop(server).await;
    let file = store_file(dir.path());
    assert!(contains(&file, "k8s:enc:aesgcm:v1:key1:"));
    assert!(!contains(&file, CANARY) && !contains(&file, CANARY_BASE64));

    // Rotate: key2 first, rewrite everything, then drop key1.
    write_config(&config, &[("key2", KEY2), ("key1", KEY1)]);
    let output = Command::new(env!("CARGO_BIN_EXE_cox"))
        .args(["reencrypt", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--encryption-provider-config")
        .arg(&config)
        .output()
        .expect("cox reencrypt runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("checked 1, rewrote 1,"), "{stdout}");
    assert!(contains(&store_file(dir.path()), "k8s:enc:aesgcm:v1:key2:"));

    write_config(&config, &[("key2", KEY2)]);
    let (server, url) = start(dir.path(), &config).await;
    let secret: Value = client
        .get(format!("{url}{SECRETS}/db"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("a secret");
    assert_eq!(secret["data"]["password"], CANARY_BASE64, "{secret}");
    stop(server).await;
}
