//! A one-node cluster from the built `cox` binary for the CLI's tests: `cox server` on a
//! free loopback port and `cox agent` (real runc, no CNI, no devices) under a private
//! root and cgroup root. Needs root, runc and util-linux (run scripts/setup.sh as root);
//! without them the tests fail saying so.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The node the agent registers.
pub const NODE: &str = "n1";

/// A server and an agent; both are killed when dropped.
pub struct Cluster {
    /// Holds the server's data, the agent's root and the daemons' logs.
    pub dir: tempfile::TempDir,
    /// The kubeconfig `cox server` wrote.
    pub kubeconfig: PathBuf,
    /// The agent's `--root`.
    pub agent_root: PathBuf,
    /// The GPU plugin's `/metrics` URL (`--metrics-listen`), which the agent relays
    /// (`--gpu-metrics-url`), when the cluster has GPUs.
    pub gpu_metrics_url: Option<String>,
    cgroup_root: String,
    server: Child,
    agent: Child,
    plugin: Option<Child>,
    csi: Option<Child>,
}

/// The CSI driver's name.
pub const CSI_DRIVER: &str = "csi.coxswain.dev";

/// `cox-nvidia-plugin`, which must sit beside `cox`; built when missing.
pub fn plugin_beside_cox() -> PathBuf {
    binary_beside_cox("cox-nvidia-plugin", "coxswain-nvidia-plugin")
}

/// `cox-csi`, which must sit beside `cox`; built when missing.
pub fn csi_beside_cox() -> PathBuf {
    binary_beside_cox("cox-csi", "coxswain-csi")
}

fn binary_beside_cox(binary: &str, package: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_cox")).with_file_name(binary);
    if !path.is_file() {
        eprintln!("{binary} not built yet: running cargo build -p {package}");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--bin", binary])
            .status();
        assert!(
            path.is_file(),
            "THE {binary} BINARY IS MISSING beside cox and building it failed ({status:?})"
        );
    }
    path
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(name)).expect("log file")
}

impl Cluster {
    /// Starts the server and the agent and waits until the node is registered.
    pub fn start() -> Self {
        Self::start_with(None, None)
    }

    /// Like [`Cluster::start`], plus `cox-csi` (`csi.coxswain.dev`) offering
    /// `capacity` on the node, given to the agent with `--csi-driver`; waits until the
    /// node announces the driver.
    pub fn start_with_csi(capacity: &str) -> Self {
        Self::start_with(None, Some(capacity))
    }

    /// Like [`Cluster::start`], plus `cox-nvidia-plugin --simulate topology` registered with
    /// the agent; waits until the node reports the simulated GPUs.
    pub fn start_with_gpus(topology: &str) -> Self {
        Self::start_with(Some(topology), None)
    }

    fn start_with(gpus: Option<&str>, csi_capacity: Option<&str>) -> Self {
        assert!(
            std::fs::metadata("/proc/self")
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
                .unwrap_or(false),
            "the cox CLI cluster tests start `cox agent`, which needs root: run them as root \
             after scripts/setup.sh"
        );
        let dir = tempfile::Builder::new()
            .prefix("cox-cli-it-")
            .tempdir_in("/var/tmp")
            .expect("temp dir");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let server = Command::new(env!("CARGO_BIN_EXE_cox"))
            .args(["server", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // Two resource scrapes a second apart give `kubectl top` its first figures.
            .args(["--metrics-resolution", "1s"])
            .stdout(Stdio::null())
            .stderr(log_file(dir.path(), "server.log"))
            .spawn()
            .expect("cox server starts");
        let agent_root = dir.path().join("agent");
        // One cgroup root per cluster: tests of one binary run clusters side by side, and an
        // agent treats unknown pod cgroups under its root as orphans to kill.
        static CLUSTERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cgroup_root = format!("coxswain-cli-it-{}-{n}", std::process::id());
        let csi_socket = dir.path().join("csi").join("csi.sock");
        let csi = csi_capacity.map(|capacity| {
            Command::new(csi_beside_cox())
                .arg("--endpoint")
                .arg(format!("unix://{}", csi_socket.display()))
                .args(["--node-id", NODE, "--capacity", capacity, "--state-dir"])
                .arg(dir.path().join("csi-state"))
                .stdout(Stdio::null())
                .stderr(log_file(dir.path(), "csi.log"))
                .spawn()
                .expect("cox-csi starts")
        });
        let csi_flag = csi
            .as_ref()
            .map(|_| format!("{CSI_DRIVER}=unix://{}", csi_socket.display()));
        let gpu_metrics = gpus.map(|_| format!("127.0.0.1:{}", free_port()));
        let gpu_metrics_url = gpu_metrics
            .as_ref()
            .map(|addr| format!("http://{addr}/metrics"));
        let agent = Command::new(env!("CARGO_BIN_EXE_cox"))
            .args(["agent", "--server", &url, "--node-name", NODE, "--root"])
            .arg(&agent_root)
            .args([
                "--runtime",
                "runc",
                "--node-ip",
                "127.0.0.1",
                "--logs-listen",
                "127.0.0.1:0",
                "--cgroup-root",
                &cgroup_root,
                "--no-cni",
            ])
            .args(gpus.is_none().then_some("--no-devices"))
            .args(
                gpu_metrics_url
                    .iter()
                    .flat_map(|url| ["--gpu-metrics-url", url.as_str()]),
            )
            .args(
                csi_flag
                    .iter()
                    .flat_map(|flag| ["--csi-driver", flag.as_str()]),
            )
            .stdout(Stdio::null())
            .stderr(log_file(dir.path(), "agent.log"))
            .spawn()
            .expect("cox agent starts");
        let plugin = gpus.map(|topology| {
            Command::new(plugin_beside_cox())
                .arg("--plugin-dir")
                .arg(agent_root.join("device-plugins"))
                .args(["--simulate", topology])
                .args([
                    "--metrics-listen",
                    gpu_metrics.as_deref().unwrap_or_default(),
                ])
                .stdout(Stdio::null())
                .stderr(log_file(dir.path(), "plugin.log"))
                .spawn()
                .expect("cox-nvidia-plugin starts")
        });
        let kubeconfig = dir.path().join("data/kubeconfig");
        let cluster = Cluster {
            dir,
            kubeconfig,
            agent_root,
            gpu_metrics_url,
            cgroup_root,
            server,
            agent,
            plugin,
            csi,
        };
        cluster.eventually("node n1 to register", || {
            let out = cluster.cox(&["get", "node", NODE, "-o", "name"]);
            out.status.success().then_some(())
        });
        if cluster.csi.is_some() {
            cluster.eventually("node n1 to announce its CSI driver", || {
                let node: Value =
                    serde_json::from_str(&cluster.ok(&["get", "node", NODE, "-o", "json"])).ok()?;
                let ids = node["metadata"]["annotations"]["csi.volume.kubernetes.io/nodeid"]
                    .as_str()?
                    .to_string();
                ids.contains(CSI_DRIVER).then_some(())
            });
        }
        if gpus.is_some() {
            cluster.eventually("node n1 to report its GPUs", || {
                let node: Value =
                    serde_json::from_str(&cluster.ok(&["get", "node", NODE, "-o", "json"])).ok()?;
                let gpus = node["status"]["allocatable"]["nvidia.com/gpu"].as_str()?;
                (gpus != "0").then_some(())
            });
        }
        cluster
    }

    /// Runs `cox args` against this cluster.
    pub fn cox(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cox"))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("cox runs")
    }

    /// Runs `cox args`, asserts it succeeded and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cox(args);
        assert!(
            out.status.success(),
            "cox {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `cox args`, asserts it failed and returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cox(args);
        assert!(
            !out.status.success(),
            "cox {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Applies `yaml`.
    pub fn apply(&self, yaml: &str) {
        let file = self.dir.path().join("manifest.yaml");
        std::fs::write(&file, yaml).expect("manifest written");
        self.ok(&["apply", "-f", file.to_str().expect("utf-8 path")]);
    }

    /// The pod as JSON, if it exists.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        let out = self.cox(&["get", "pod", name, "-n", namespace, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("pod JSON"))
    }

    /// Waits for the pod's phase to be `phase`; panics (with the status and the agent's
    /// log) if it settles in another terminal phase or after a generous hang guard.
    pub fn wait_phase(&self, namespace: &str, name: &str, phase: &str) -> Value {
        self.eventually(&format!("pod {namespace}/{name} to be {phase}"), || {
            let pod = self.pod(namespace, name)?;
            let now = pod["status"]["phase"].as_str().unwrap_or_default();
            if now != phase && matches!(now, "Succeeded" | "Failed") {
                panic!(
                    "pod {name} ended {now}, not {phase}: {:#}\nagent log:\n{}",
                    pod["status"],
                    self.agent_log()
                );
            }
            (now == phase).then_some(pod)
        })
    }

    /// Polls `check` every 100 ms until it returns `Some`; panics after a generous hang
    /// guard (not a timing assertion).
    pub fn eventually<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let limit = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(
                Instant::now() < limit,
                "timed out waiting for {what}\nagent log:\n{}",
                self.agent_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The agent's log so far (for failure messages).
    pub fn agent_log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Deletes every pod and waits until the agent has removed them (so no container
    /// outlives the test).
    pub fn delete_all_pods(&self) {
        let names = self.ok(&["get", "pods", "-A", "-o", "json"]);
        let list: Value = serde_json::from_str(&names).expect("pod list JSON");
        for pod in list["items"].as_array().into_iter().flatten() {
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            self.ok(&["delete", "pod", name, "-n", ns]);
        }
        self.eventually("every pod to be removed by the agent", || {
            let out = self.ok(&["get", "pods", "-A", "-o", "name"]);
            out.trim().is_empty().then_some(())
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in [
            Some(&mut self.agent),
            self.plugin.as_mut(),
            self.csi.as_mut(),
            Some(&mut self.server),
        ]
        .into_iter()
        .flatten()
        {
            child.kill().ok();
            child.wait().ok();
        }
        // A failed CSI test can leave its volumes staged: unmount what is under the
        // test's directory and detach the loop devices of its images.
        let dir = self.dir.path().display().to_string();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            Command::new("umount").args(["-l", mount]).status().ok();
        }
        if let Ok(out) = Command::new("losetup").arg("-a").output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some((device, _)) = line.split_once(':').filter(|_| line.contains(&dir)) {
                    Command::new("losetup").args(["-d", device]).status().ok();
                }
            }
        }
        // The (by now empty) cgroup root in every hierarchy, v1 and v2.
        let mut roots = vec![Path::new("/sys/fs/cgroup").join(&self.cgroup_root)];
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            roots.push(hierarchy.path().join(&self.cgroup_root));
        }
        for root in roots {
            remove_cgroup_tree(&root);
        }
    }
}

/// Removes an empty cgroup and the empty cgroups below it (cgroupfs only allows rmdir).
fn remove_cgroup_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    std::fs::remove_dir(dir).ok();
}
