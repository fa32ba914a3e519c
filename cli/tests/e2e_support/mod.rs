//! A one-machine cluster for end-to-end tests, made of the built binaries as `cox demo`
//! makes it: `cox server` (embedded store), `cox-nvidia-plugin --simulate` and `cox agent`
//! (runc, CNI bridge, node-local DNS). Each cluster has its own pod CIDR, bridge, cgroup
//! root and log port, so it can run beside another one (a `cox demo`, another test). The
//! daemons are stopped when the cluster is dropped; their logs are in `<dir>/logs`.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One test's cluster.
pub struct Cluster {
    /// The API's base URL (`http://127.0.0.1:<port>`).
    pub url: String,
    /// The node's name.
    pub node: String,
    /// Everything the cluster writes: store, agent root, logs, checkpoints.
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    daemons: Mutex<Vec<(&'static str, Child)>>,
    /// The agent's bridge, deleted when the cluster is dropped.
    bridge: &'static str,
}

/// Which names and addresses a cluster uses, distinct per test.
pub struct Layout {
    /// The node name (also the cgroup root's suffix).
    pub node: &'static str,
    /// The server's `--cluster-cidr` (the node gets its first /24).
    pub cluster_cidr: &'static str,
    /// The agent's Linux bridge.
    pub bridge: &'static str,
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `cox-nvidia-plugin` beside `cox`; built when missing.
pub fn plugin_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_cox")).with_file_name("cox-nvidia-plugin");
    if !path.is_file() {
        eprintln!("cox-nvidia-plugin not built yet: running cargo build -p coxswain-nvidia-plugin");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "coxswain-nvidia-plugin",
                "--bin",
                "cox-nvidia-plugin",
            ])
            .status();
        assert!(
            path.is_file(),
            "THE cox-nvidia-plugin BINARY IS MISSING beside cox and building it failed ({status:?})"
        );
    }
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Cluster {
    /// Starts the three daemons and waits until the node is Ready with GPUs.
    pub async fn start(layout: &Layout) -> Cluster {
        assert!(
            is_root(),
            "THIS TEST NEEDS ROOT: the agent runs containers with runc in namespaces and cgroups"
        );
        let plugin = plugin_binary();
        let dir = tempfile::tempdir().expect("a temp dir");
        let logs = dir.path().join("logs");
        let agent_root = dir.path().join("agent");
        let plugin_dir = agent_root.join("device-plugins");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&plugin_dir).unwrap();
        std::fs::create_dir_all(dir.path().join("checkpoints")).unwrap();
        let url = format!("http://127.0.0.1:{}", free_port());
        let cluster = Cluster {
            url: url.clone(),
            node: layout.node.to_string(),
            http: reqwest::Client::new(),
            daemons: Mutex::new(Vec::new()),
            dir,
            bridge: layout.bridge,
        };
        let cox = env!("CARGO_BIN_EXE_cox");
        let mut server = Command::new(cox);
        server
            .arg("server")
            .arg("--data-dir")
            .arg(cluster.dir.path().join("server"))
            .args(["--listen", url.trim_start_matches("http://")])
            .args(["--cluster-cidr", layout.cluster_cidr]);
        cluster.spawn("server", &mut server);
        cluster.wait_for_api().await;
        let mut plugin_cmd = Command::new(plugin);
        plugin_cmd
            .arg("--plugin-dir")
            .arg(&plugin_dir)
            .args(["--simulate", "dgx-h100"]);
        cluster.spawn("nvidia-plugin", &mut plugin_cmd);
        let mut agent = Command::new(cox);
        agent
            .arg("agent")
            .args(["--server", &url, "--node-name", layout.node])
            .args(["--node-ip", "127.0.0.1", "--logs-listen", "127.0.0.1:0"])
            .args(["--bridge", layout.bridge])
            .args(["--cgroup-root", &format!("coxswain-{}", layout.node)])
            .arg("--root")
            .arg(&agent_root)
            .arg("--allow-host-path")
            .arg(cluster.dir.path().join("checkpoints"));
        cluster.spawn("agent", &mut agent);
        cluster.wait_for_node().await;
        cluster
    }

    fn spawn(&self, name: &'static str, cmd: &mut Command) {
        let log = self.dir.path().join("logs").join(format!("{name}.log"));
        let out = File::create(&log).expect("a log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.daemons.lock().unwrap().push((name, child));
    }

    /// Where hostPath checkpoints of job `job` may go (the agent allows this tree).
    pub fn checkpoints(&self, job: &str) -> PathBuf {
        self.dir.path().join("checkpoints").join(job)
    }

    /// The end of each daemon's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for name in ["server", "nvidia-plugin", "agent"] {
            let log =
                std::fs::read_to_string(self.dir.path().join("logs").join(format!("{name}.log")))
                    .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            text.push_str(&format!("--- {name} log (end)\n"));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Panics with the daemons' logs when one of them exited.
    pub fn check_daemons(&self) {
        let exited: Vec<String> = self
            .daemons
            .lock()
            .unwrap()
            .iter_mut()
            .filter_map(|(name, child)| {
                child
                    .try_wait()
                    .ok()
                    .flatten()
                    .map(|status| format!("{name} exited ({status})"))
            })
            .collect();
        assert!(exited.is_empty(), "{exited:?}\n{}", self.logs());
    }

    /// GET `path`: the status code and the body (JSON, or the text as a JSON string).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// A pod's log as text.
    pub async fn log(&self, namespace: &str, pod: &str) -> String {
        let (status, body) = self
            .get(&format!("/api/v1/namespaces/{namespace}/pods/{pod}/log"))
            .await;
        assert_eq!(status, 200, "the log of {pod}: {body}");
        match body {
            Value::String(text) => text,
            other => other.to_string(),
        }
    }

    /// Labels the `default` namespace `pod-security.kubernetes.io/enforce: privileged`,
    /// for tests whose pods use hostPath volumes or hostPorts: the API refuses those in a
    /// namespace at the default (baseline) level.
    pub async fn allow_host_pods(&self) {
        let response = self
            .http
            .patch(format!("{}/api/v1/namespaces/default", self.url))
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}"#)
            .send()
            .await
            .expect("PATCH namespace default");
        assert!(
            response.status().is_success(),
            "labelling namespace default privileged: {}",
            response.status()
        );
    }

    /// POSTs `object` to `collection` and returns what was stored.
    pub async fn create(&self, collection: &str, object: &Value) -> Value {
        let response = self
            .http
            .post(format!("{}{collection}", self.url))
            .json(object)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {collection}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {collection}: {status} {body}");
        body
    }

    /// DELETEs `path` with the given propagation policy.
    pub async fn delete(&self, path: &str, propagation: &str) {
        let _ = self
            .http
            .delete(format!("{}{path}", self.url))
            .json(&serde_json::json!({"propagationPolicy": propagation}))
            .send()
            .await;
    }

    /// Creates the ConfigMap `coxswain-trainer` holding the example trainer.
    pub async fn create_trainer_config_map(&self) {
        let trainer = include_str!("../../../examples/trainer/train.py");
        let config_map = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coxswain-trainer", "namespace": "default"},
            "data": {"train.py": trainer},
        });
        self.create("/api/v1/namespaces/default/configmaps", &config_map)
            .await;
    }

    /// Polls `check` every 500 ms until it returns `Some`; panics naming `what`, with the
    /// daemons' logs, after `limit`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, limit: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            self.check_daemons();
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn wait_for_api(&self) {
        let http = self.http.clone();
        let url = format!("{}/api", self.url);
        self.wait_for("the API server", Duration::from_secs(60), || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let ok = http
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                ok.then_some(())
            }
        })
        .await;
    }

    async fn wait_for_node(&self) {
        let path = format!("/api/v1/nodes/{}", self.node);
        let this = self;
        let mut ready = false;
        let deadline = Instant::now() + Duration::from_secs(90);
        while !ready {
            let (status, node) = this.get(&path).await;
            let gpus = node["status"]["allocatable"]["nvidia.com/gpu"]
                .as_str()
                .and_then(|q| q.parse::<i64>().ok())
                .unwrap_or(0);
            ready = status == 200
                && gpus > 0
                && node["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if !ready {
                assert!(
                    Instant::now() < deadline,
                    "node {} did not become Ready with GPUs\n{}",
                    self.node,
                    this.logs()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        self.check_daemons();
    }

    /// Deletes `job_path` in the foreground and waits until no pod is left, so the agent
    /// tears their sandboxes down before it stops.
    pub async fn delete_and_drain(&self, job_path: &str) {
        self.delete(job_path, "Foreground").await;
        let this = self;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (_, pods) = this.get("/api/v1/namespaces/default/pods").await;
            if pods["items"]
                .as_array()
                .is_some_and(|items| items.is_empty())
            {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("pods still there after 90 s: {pods}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Cluster {
    /// Stops the daemons in reverse order: SIGTERM, up to 10 s, then SIGKILL; deletes the
    /// agent's bridge.
    fn drop(&mut self) {
        let daemons = self.daemons.get_mut().unwrap_or_else(|e| e.into_inner());
        while let Some((_, mut child)) = daemons.pop() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The agent made the bridge for its pods; the pods are gone, so is the host's need.
        let _ = Command::new("ip")
            .args(["link", "del", self.bridge])
            .status();
    }
}

/// The `rank R/W epoch E loss L` lines of `rank` in `log`, as (epoch, loss).
pub fn epochs(log: &str, rank: u32) -> Vec<(u32, f64)> {
    let prefix = format!("rank {rank}/");
    log.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [_, _, "epoch", epoch, "loss", loss] => {
                    Some((epoch.parse().ok()?, loss.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

/// The condition `type_` of an object's status, if present.
pub fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Whether the object's condition `type_` is `True`.
pub fn is_true(object: &Value, type_: &str) -> bool {
    condition(object, type_).is_some_and(|c| c["status"] == "True")
}

/// Takes the example job's dataset claim out of `job` (the volume, its mounts and the
/// `DATASET` variable): the e2e clusters run no CSI driver, so the trainer makes its
/// synthetic data itself.
pub fn drop_dataset(job: &mut Value) {
    for group in job["spec"]["replicaGroups"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        let spec = &mut group["template"]["spec"];
        if let Some(volumes) = spec["volumes"].as_array_mut() {
            volumes.retain(|v| v["name"] != "dataset");
        }
        for container in spec["containers"].as_array_mut().into_iter().flatten() {
            if let Some(mounts) = container["volumeMounts"].as_array_mut() {
                mounts.retain(|m| m["name"] != "dataset");
            }
            if let Some(env) = container["env"].as_array_mut() {
                env.retain(|e| e["name"] != "DATASET");
            }
        }
    }
}

/// Makes every volume named `volume` under `object` (a hostPath or a claim) the hostPath
/// `path`: the e2e clusters run no CSI driver, and the test reads the files there.
pub fn point_host_paths(object: &mut Value, volume: &str, path: &Path) {
    match object {
        Value::Object(map) => {
            let named = map.get("name").and_then(Value::as_str) == Some(volume);
            if named && (map.contains_key("hostPath") || map.contains_key("persistentVolumeClaim"))
            {
                map.remove("persistentVolumeClaim");
                map.insert(
                    "hostPath".to_string(),
                    serde_json::json!({"path": path.display().to_string(), "type": "DirectoryOrCreate"}),
                );
            }
            for value in map.values_mut() {
                point_host_paths(value, volume, path);
            }
        }
        Value::Array(items) => {
            for value in items {
                point_host_paths(value, volume, path);
            }
        }
        _ => {}
    }
}
