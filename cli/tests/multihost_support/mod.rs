//! A multi-host cluster on one machine: each "host" is a network namespace joined to a
//! test bridge in the root namespace by a veth pair, running a real `cox agent` (with
//! runc and the CNI plugins) inside it; one `cox server` on the embedded store listens on
//! loopback and on a Unix socket, which the agents dial (`--server unix://…`) since
//! loopback is per namespace — or, with [`Cluster::start_tls`], also with TLS on the bridge
//! address, which the agents dial (`--server https://10.213.X.1:P`) after joining with a
//! bootstrap token.
//!
//! ```text
//!   root netns: cox server (127.0.0.1:P + <dir>/cp.sock), test bridge <run>br 10.213.X.1/24
//!        │ veth                         │ veth
//!   netns <run>-a: 10.213.X.2          netns <run>-b: 10.213.X.3
//!     cox agent, bridge cox0             cox agent, bridge cox0
//!     pods 10.214.0.0/24                 pods 10.214.1.0/24   (host-gw routes, proto 199)
//! ```
//!
//! Every name carries a per-run prefix, every address lives on the test bridge (nothing
//! has a route off the machine), and [`Cluster`]'s `Drop` removes pods, processes,
//! mounts, cgroups, namespaces and links even when the test panicked.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The range the server hands node pod CIDRs out of (they only exist inside the hosts'
/// namespaces).
pub const CLUSTER_CIDR: &str = "10.214.0.0/16";

/// Serialises picking a free test subnet and claiming it with the bridge.
static SUBNETS: Mutex<()> = Mutex::new(());
static RUNS: AtomicU32 = AtomicU32::new(0);

/// Runs `program args`, returning its output; panics if it cannot start.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"))
}

/// Runs `ip args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = run("ip", args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A process killed (SIGTERM, then SIGKILL) on drop.
pub struct ChildGuard {
    /// What it is, for messages.
    pub name: String,
    /// The process.
    pub child: Child,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

impl ChildGuard {
    fn spawn(name: &str, command: &mut Command, log: PathBuf) -> Self {
        let file = File::create(&log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The end of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Panics with its log if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status})\n{}", self.name, self.log_tail(40));
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if let Ok(None) = self.child.try_wait() {
            let _ = run("kill", &["-TERM", &self.child.id().to_string()]);
            let limit = Instant::now() + grace;
            while Instant::now() < limit {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// One simulated host: a network namespace on the test bridge running `cox agent`.
pub struct Host {
    /// The node's name (`host-a`, …).
    pub node: String,
    /// The network namespace (`ip netns`), also under /run/netns.
    pub netns: String,
    /// The host's address on the test bridge (the node's InternalIP).
    pub addr: Ipv4Addr,
    /// The agent's `--root`.
    pub root: PathBuf,
    /// The agent's `--cgroup-root`.
    pub cgroup_root: String,
    /// The agent process (`None` once stopped).
    pub agent: Option<ChildGuard>,
}

impl Host {
    /// `nsenter --net=<this host> program args…` (the test's own mount namespace).
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec![format!("--net=/run/netns/{}", self.netns), program.into()];
        all.extend(args.iter().map(|a| a.to_string()));
        Command::new("nsenter")
            .args(&all)
            .output()
            .expect("starting nsenter")
    }
}

/// The control plane and its hosts; everything is removed on drop.
pub struct Cluster {
    /// The per-run prefix of every name.
    pub run: String,
    /// Scratch space (agents' roots, server data, logs, the socket).
    pub dir: tempfile::TempDir,
    /// The test bridge in the root namespace.
    pub bridge: String,
    /// The bridge's address (root namespace side).
    pub gateway: Ipv4Addr,
    /// The hosts, in order `host-a`, `host-b`, ….
    pub hosts: Vec<Host>,
    /// The API over loopback TCP (root namespace).
    pub url: String,
    /// The Unix socket the agents use.
    pub socket: PathBuf,
    /// The server process.
    pub server: Option<ChildGuard>,
    /// An HTTP client for [`Cluster::url`].
    pub http: reqwest::Client,
    /// How agents reach the control plane.
    pub join: Join,
}

/// How the agents reach the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Join {
    /// Over the server's 0600 Unix socket (no TLS, no credentials).
    UnixSocket,
    /// Over TLS to the server's `--secure-listen` on the bridge address, each agent joining
    /// with a bootstrap token (`cox token create`) and getting its node certificate.
    BootstrapToken {
        /// `https://<gateway>:<port>`.
        url: String,
        /// The token from `cox token create`.
        token: String,
    },
}

/// Fails loudly unless we are root and the tools are there.
pub fn check_prerequisites() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    assert!(
        root,
        "THIS TEST NEEDS ROOT: it makes network namespaces and runs cox agent"
    );
    for tool in ["ip", "nsenter", "runc", "busybox", "python3"] {
        let found = run("sh", &["-c", &format!("command -v {tool}")]);
        assert!(
            found.status.success(),
            "{tool} is missing: run scripts/setup.sh as root"
        );
    }
}

/// A short unique prefix for this run: `m` + 4 hex digits of the pid + a counter.
fn run_prefix() -> String {
    let n = RUNS.fetch_add(1, Ordering::SeqCst);
    format!("m{:04x}{n}", std::process::id() & 0xffff)
}

/// The third octet of a 10.213.X.0/24 no route of the root namespace touches.
fn free_subnet() -> u8 {
    let routes =
        String::from_utf8_lossy(&run("ip", &["-4", "route", "show", "table", "all"]).stdout)
            .into_owned();
    let start = (std::process::id() % 200) as u8;
    (0..250u16)
        .map(|i| ((u16::from(start) + i) % 250 + 1) as u8)
        .find(|x| !routes.contains(&format!("10.213.{x}.")))
        .expect("a free 10.213.X.0/24")
}

impl Cluster {
    /// Starts `cox server` and one agent per name in `nodes` dialing its Unix socket, and
    /// waits until every node is Ready with a pod CIDR. The agents may mount hostPaths below
    /// [`Cluster::dir`].
    pub async fn start(nodes: &[&str]) -> Self {
        Self::start_joining(nodes, false).await
    }

    /// As [`Cluster::start`], but the agents dial the server's TLS listener on the bridge
    /// address and join with a bootstrap token ([`Join::BootstrapToken`]).
    pub async fn start_tls(nodes: &[&str]) -> Self {
        Self::start_joining(nodes, true).await
    }

    async fn start_joining(nodes: &[&str], tls: bool) -> Self {
        check_prerequisites();
        let run_name = run_prefix();
        let dir = tempfile::Builder::new()
            .prefix(&format!("cox-{run_name}-"))
            .tempdir_in("/var/tmp")
            .expect("scratch dir");
        let bridge = format!("{run_name}br");
        let mut cluster = {
            let _claim = SUBNETS.lock().unwrap_or_else(|e| e.into_inner());
            let x = free_subnet();
            let gateway = Ipv4Addr::new(10, 213, x, 1);
            let cluster = Cluster {
                run: run_name.clone(),
                socket: dir.path().join("cp.sock"),
                dir,
                bridge: bridge.clone(),
                gateway,
                hosts: Vec::new(),
                url: String::new(),
                server: None,
                http: reqwest::Client::new(),
                join: Join::UnixSocket,
            };
            ip(&["link", "add", &bridge, "type", "bridge"]);
            ip(&["addr", "add", &format!("{gateway}/24"), "dev", &bridge]);
            ip(&["link", "set", &bridge, "up"]);
            cluster
        };
        cluster.start_server(tls).await;
        for (i, node) in nodes.iter().enumerate() {
            cluster.add_host(node, i);
        }
        for node in nodes {
            cluster.wait_ready(node).await;
        }
        cluster
    }

    async fn start_server(&mut self, tls: bool) {
        let data = self.dir.path().join("server");
        let mut command = Command::new(env!("CARGO_BIN_EXE_cox"));
        command
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--cluster-cidr",
                CLUSTER_CIDR,
            ])
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-unix")
            .arg(&self.socket);
        if tls {
            command.args(["--secure-listen", &format!("{}:0", self.gateway)]);
        }
        let log = self.dir.path().join("server.log");
        let mut server = ChildGuard::spawn("cox server", &mut command, log.clone());
        let limit = Instant::now() + Duration::from_secs(60);
        self.url = loop {
            server.assert_running();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(url) = text
                .lines()
                .find_map(|l| l.split("serving the API on ").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                && self.socket.exists()
            {
                break url.to_string();
            }
            assert!(Instant::now() < limit, "cox server did not start\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.server = Some(server);
        if tls {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let url = text
                .lines()
                .find_map(|l| l.split("serving the API with TLS on ").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .expect("the TLS listener's URL in the server log")
                .to_string();
            let out = Command::new(env!("CARGO_BIN_EXE_cox"))
                .args(["token", "create", "--kubeconfig"])
                .arg(data.join("kubeconfig"))
                .output()
                .expect("cox token create");
            assert!(
                out.status.success(),
                "cox token create: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
            self.join = Join::BootstrapToken { url, token };
        }
    }

    fn add_host(&mut self, node: &str, index: usize) {
        let letter = (b'a' + index as u8) as char;
        let netns = format!("{}-{letter}", self.run);
        let outside = format!("{}v{letter}", self.run);
        let octets = self.gateway.octets();
        let addr = Ipv4Addr::new(octets[0], octets[1], octets[2], 2 + index as u8);
        ip(&["netns", "add", &netns]);
        // Registered before anything else can fail, so Drop removes the namespace.
        let root = self.dir.path().join(format!("host-{letter}"));
        std::fs::create_dir_all(&root).expect("agent root");
        self.hosts.push(Host {
            node: node.to_string(),
            netns: netns.clone(),
            addr,
            root: root.clone(),
            cgroup_root: format!("cox-{netns}"),
            agent: None,
        });
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        ip(&["link", "set", &outside, "master", &self.bridge]);
        ip(&["link", "set", &outside, "up"]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        let host = self.hosts.last().expect("just pushed");
        let forwarding = host.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        assert!(
            forwarding.status.success(),
            "enabling forwarding in {netns}"
        );
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{netns}"))
            .arg(env!("CARGO_BIN_EXE_cox"))
            .args([
                "agent",
                "--node-name",
                node,
                "--runtime",
                "runc",
                "--no-devices",
            ])
            .args(self.server_flags())
            .arg("--root")
            .arg(&root)
            .args(["--node-ip", &addr.to_string()])
            .args(["--logs-listen", &format!("{addr}:10250")])
            .args(["--cgroup-root", &host.cgroup_root])
            .arg("--allow-host-path")
            .arg(self.dir.path())
            .env("RUST_LOG", "info");
        let log = self.dir.path().join(format!("agent-{node}.log"));
        let agent = ChildGuard::spawn(&format!("cox agent {node}"), &mut command, log);
        self.hosts.last_mut().expect("just pushed").agent = Some(agent);
    }

    /// How an agent dials the control plane ([`Cluster::join`]).
    fn server_flags(&self) -> Vec<String> {
        match &self.join {
            Join::UnixSocket => vec![
                "--server".into(),
                format!("unix://{}", self.socket.display()),
            ],
            Join::BootstrapToken { url, token } => vec![
                "--server".into(),
                url.clone(),
                "--ca-file".into(),
                self.dir
                    .path()
                    .join("server/pki/ca.crt")
                    .display()
                    .to_string(),
                "--bootstrap-token".into(),
                token.clone(),
            ],
        }
    }

    /// The host running node `node`.
    pub fn host(&self, node: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.node == node)
            .unwrap_or_else(|| panic!("no host {node}"))
    }

    /// Every process's log tail, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for guard in self
            .server
            .iter()
            .chain(self.hosts.iter().filter_map(|h| h.agent.as_ref()))
        {
            text.push_str(&format!("--- {} ---\n{}\n", guard.name, guard.log_tail(25)));
        }
        text
    }

    /// Panics (with the logs) if a daemon died.
    pub fn assert_running(&mut self) {
        let logs = self.logs();
        let dead = self
            .server
            .iter_mut()
            .chain(self.hosts.iter_mut().filter_map(|h| h.agent.as_mut()))
            .find_map(|g| matches!(g.child.try_wait(), Ok(Some(_))).then(|| g.name.clone()));
        if let Some(name) = dead {
            panic!("{name} exited\n{logs}");
        }
    }

    /// GET `path` as JSON; `None` on 404.
    pub async fn get(&self, path: &str) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        Some(response.json().await.expect("JSON"))
    }

    /// GET `path` as text with its status.
    pub async fn get_text(&self, path: &str) -> (reqwest::StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        (status, response.text().await.unwrap_or_default())
    }

    /// POST `body` to `path`; panics unless created.
    pub async fn create(&self, path: &str, body: &Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path}: {status}: {text}");
        serde_json::from_str(&text).expect("JSON")
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

    /// Creates pod `name` in `default` bound to `node` (no scheduler involved).
    pub async fn create_pod(&self, name: &str, node: &str, spec: Value) -> Value {
        let mut spec = spec;
        spec["nodeName"] = json!(node);
        self.create(
            "/api/v1/namespaces/default/pods",
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}),
        )
        .await
    }

    /// Polls until `check` returns `Some`, failing with `what` and the logs after a hang
    /// guard (not a timing assertion).
    pub async fn eventually<T, F, Fut>(&mut self, what: &str, limit: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_ready(&mut self, node: &str) {
        let path = format!("/api/v1/nodes/{node}");
        let (url, http) = (self.url.clone(), self.http.clone());
        self.eventually(
            &format!("node {node} Ready with a pod CIDR"),
            Duration::from_secs(120),
            || {
                let (url, http, path) = (url.clone(), http.clone(), path.clone());
                async move {
                    let node: Value = http
                        .get(format!("{url}{path}"))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    let ready = node["status"]["conditions"]
                        .as_array()?
                        .iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True");
                    (ready && node["spec"]["podCIDR"].is_string()).then_some(())
                }
            },
        )
        .await;
    }

    /// The pod `name` in `default`, once `done` holds for it.
    pub async fn pod_when(
        &mut self,
        name: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/api/v1/namespaces/default/pods/{name}");
        let (url, http) = (self.url.clone(), self.http.clone());
        let done = &done;
        self.eventually(
            &format!("pod {name} {what}"),
            Duration::from_secs(180),
            || {
                let (url, http, path) = (url.clone(), http.clone(), path.clone());
                async move {
                    let pod: Value = http
                        .get(format!("{url}{path}"))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    done(&pod).then_some(pod)
                }
            },
        )
        .await
    }

    /// `kubectl logs`: the API's `pods/{name}/log`, proxied to the pod's agent.
    pub async fn pod_log(&self, name: &str) -> String {
        let (status, text) = self
            .get_text(&format!("/api/v1/namespaces/default/pods/{name}/log"))
            .await;
        assert!(status.is_success(), "logs of {name}: {status}: {text}");
        text
    }

    /// The names of the objects listed at `path`; `None` when the server does not answer.
    async fn names(&self, http: &reqwest::Client, path: &str) -> Option<Vec<String>> {
        let list: Value = http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(
            list["items"]
                .as_array()?
                .iter()
                .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
                .collect(),
        )
    }

    /// Deletes every TrainingJob and pod and waits (bounded) until the agents removed them.
    async fn delete_workloads(&self) {
        // A client of its own: Drop runs this on a runtime of its own.
        let http = reqwest::Client::new();
        const JOBS: &str = "/apis/coxswain.dev/v1alpha1/namespaces/default/trainingjobs";
        const PODS: &str = "/api/v1/namespaces/default/pods";
        for job in self.names(&http, JOBS).await.unwrap_or_default() {
            let _ = http
                .delete(format!("{}{JOBS}/{job}", self.url))
                .send()
                .await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let Some(pods) = self.names(&http, PODS).await else {
                return;
            };
            if pods.is_empty() {
                return;
            }
            for pod in pods {
                let url = format!("{}{PODS}/{pod}?gracePeriodSeconds=0", self.url);
                let _ = http.delete(url).send().await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Stops everything; Drop does the same (this is the graceful, async half).
    pub async fn shutdown(mut self) {
        self.delete_workloads().await;
        self.teardown();
    }

    /// Kills processes and removes containers, mounts, cgroups, namespaces and links.
    fn teardown(&mut self) {
        for host in &mut self.hosts {
            if let Some(mut agent) = host.agent.take() {
                agent.stop(Duration::from_secs(10));
            }
        }
        for host in &self.hosts {
            force_clean(host);
        }
        if let Some(mut server) = self.server.take() {
            server.stop(Duration::from_secs(10));
        }
        unmount_below(self.dir.path());
        for host in self.hosts.drain(..) {
            let _ = run("ip", &["netns", "del", &host.netns]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.server.is_some() && !self.hosts.is_empty() {
            // Best effort: let the agents tear pods down (CNI DEL, cgroups) first.
            let cluster = &*self;
            let _ = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map(|rt| rt.block_on(cluster.delete_workloads()))
                    })
                    .join()
            });
        }
        self.teardown();
    }
}

/// Removes whatever an agent left on `host` (containers, pod mounts and namespaces, pod
/// cgroups) with the agent's own orphan removal, then its cgroup root.
fn force_clean(host: &Host) {
    use coxswain_node_agent::AgentConfig;
    use coxswain_node_agent::agent::worker_deps;
    use coxswain_node_agent::runtime::RuntimeKind;
    let shim = host.root.join("bin/coxswain-shim");
    if !shim.exists() {
        return;
    }
    let mut config = AgentConfig::new(&host.root);
    config.cgroup_root = host.cgroup_root.clone();
    if let Ok(deps) = worker_deps(&config, Some(RuntimeKind::Runc), shim) {
        let _ = coxswain_node_agent::worker::remove_orphans(&deps, &BTreeSet::new());
        let _ = deps
            .sandbox
            .cgroups()
            .remove(&format!("/{}", host.cgroup_root));
    }
}

/// Lazily unmounts every mount point below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = run("umount", &["-l", point]);
    }
}
