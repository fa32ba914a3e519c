//! `cox server` killed with SIGKILL while 16 clients create objects: after a restart on the same
//! data directory, every create that was acknowledged (2xx) is there. Then SIGTERM stops the
//! restarted server cleanly.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

const CLIENTS: usize = 16;
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn start(dir: &Path, port: u16) -> Child {
    let log = std::fs::File::create(dir.join(format!("server-{port}.log"))).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_cox"))
        .args(["server", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("cox server starts")
}

async fn wait_ready(client: &reqwest::Client, url: &str) {
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{url}/version")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cox server at {url} did not become ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_creates_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = start(dir.path(), port);
    wait_ready(&client, &url).await;

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for writer in 0..CLIENTS {
        let (client, url, acknowledged) = (client.clone(), url.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{writer}-{i}");
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": i.to_string()}});
                match client.post(format!("{url}{CONFIGMAPS}")).json(&body).send().await {
                    Ok(r) if r.status().is_success() => acknowledged.lock().expect("lock").push(name),
                    Ok(r) => panic!("create {name}: {}", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Kill once enough creates are in flight and acknowledged.
    while acknowledged.lock().expect("lock").len() < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
    for writer in writers {
        writer.await.expect("writer task");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = start(dir.path(), port);
    wait_ready(&client, &url).await;
    let list: Value = client
        .get(format!("{url}{CONFIGMAPS}"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let stored: std::collections::HashSet<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|n| !stored.contains(n.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creates lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );

    // SIGTERM drains and exits cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    for _ in 0..300 {
        if let Some(exit) = server.try_wait().expect("try_wait") {
            assert!(
                exit.success(),
                "cox server exited with {exit} after SIGTERM"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().ok();
    panic!("cox server did not stop after SIGTERM");
}
