//! The agent daemon as a child process that a test can SIGKILL and start again on
//! the same root: the test binary runs itself with `--exact <helper> --ignored`, and
//! the helper test calls [`child_main`], which starts the agent the way `cox agent`
//! does (hybrid cgroup set-up, `worker_deps`, the CNI network) from a JSON spec in
//! the environment. Its log (stderr, `tracing` without colours) is appended to a file.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use coxswain_node_agent::AgentConfig;
use coxswain_node_agent::agent::{AgentDaemonConfig, NodeNetworkConfig, worker_deps};
use coxswain_node_agent::runtime::RuntimeKind;
use coxswain_node_agent::sandbox::{CgroupVersion, cgroup};
use tokio_util::sync::CancellationToken;

/// The environment variable carrying the child agent's spec (JSON).
pub const AGENT_ENV: &str = "COX_TEST_AGENT_PROCESS";

/// Optional: the child agent's `--csi-driver` values, separated by spaces.
pub const CSI_ENV: &str = "COX_TEST_AGENT_CSI_DRIVERS";

/// How the child agent is started.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// The control plane URL.
    pub server: String,
    /// The node name.
    pub node: String,
    /// The agent root.
    pub root: PathBuf,
    /// The cgroup root of its pods.
    pub cgroup_root: String,
    /// `runc` or `crun`.
    pub runtime: String,
    /// The pod bridge (coxswain's conflist on the assigned pod CIDR); empty: no pod
    /// network (host-network pods only).
    pub bridge: String,
    /// The node-local DNS port (`None`: no DNS server).
    pub dns_port: Option<u16>,
    /// The `tracing` filter of its log.
    pub log_filter: String,
    /// Where it serves `kubelet.sock` for device plugins (`None`: no device manager).
    pub device_plugin_dir: Option<PathBuf>,
}

impl AgentSpec {
    fn to_json(&self) -> String {
        serde_json::json!({
            "server": self.server, "node": self.node, "root": self.root,
            "cgroup_root": self.cgroup_root, "runtime": self.runtime, "bridge": self.bridge,
            "dns_port": self.dns_port, "log_filter": self.log_filter,
            "device_plugin_dir": self.device_plugin_dir,
        })
        .to_string()
    }
}

/// A running child agent; SIGKILLed on drop.
pub struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    /// Starts the agent of `spec` by running this test binary's `helper` test, with
    /// its output appended to `log`.
    pub fn spawn(helper: &str, spec: &AgentSpec, log: &Path) -> Self {
        Self::spawn_with_env(helper, spec, log, &[])
    }

    /// [`Self::spawn`] with extra environment variables (e.g. [`CSI_ENV`]).
    pub fn spawn_with_env(
        helper: &str,
        spec: &AgentSpec,
        log: &Path,
        env: &[(&str, String)],
    ) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                helper,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(AGENT_ENV, spec.to_json())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawning the agent process");
        Self { child }
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap it.
    pub fn sigkill(mut self) {
        self.kill_now();
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// The helper test's body: runs the agent of [`AGENT_ENV`] until killed; returns at
/// once when the variable is not set (the helper run on its own).
pub fn child_main() {
    let Ok(spec) = std::env::var(AGENT_ENV) else {
        return;
    };
    let spec: serde_json::Value = serde_json::from_str(&spec).expect("agent spec JSON");
    let text = |key: &str| spec[key].as_str().unwrap_or_default().to_string();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(text("log_filter")))
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    if cgroup::detect().version() == CgroupVersion::V1 {
        cgroup::v1::release_unified_controllers(Path::new("/sys/fs/cgroup")).unwrap();
    }
    let root = PathBuf::from(text("root"));
    let mut config = AgentConfig::new(root.clone());
    config.cgroup_root = text("cgroup_root");
    config.backoff_initial = Duration::from_millis(500);
    config.backoff_max = Duration::from_secs(2);
    let kind = RuntimeKind::parse(&text("runtime")).expect("runc or crun");
    let shim = PathBuf::from(env!("CARGO_BIN_EXE_coxswain-shim"));
    let deps = worker_deps(&config, Some(kind), shim).expect("worker deps");
    let mut daemon = AgentDaemonConfig::new(text("server"), text("node"));
    daemon.logs_listen = "127.0.0.1:0".parse().unwrap();
    daemon.lease_interval = Duration::from_secs(1);
    daemon.reconnect_max = Duration::from_secs(1);
    if !text("bridge").is_empty() {
        let mut network = NodeNetworkConfig::new(&root);
        network.bridge = text("bridge");
        network.dns_port = spec["dns_port"].as_u64().map(|p| p as u16);
        daemon.network = Some(network);
    }
    daemon.device_plugin_dir = spec["device_plugin_dir"].as_str().map(PathBuf::from);
    daemon.csi_drivers = std::env::var(CSI_ENV)
        .unwrap_or_default()
        .split_whitespace()
        .map(|d| d.parse().expect("a --csi-driver value"))
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        coxswain_node_agent::agent::run(daemon, deps, CancellationToken::new())
            .await
            .expect("the agent failed");
    });
}
