//! `cox agent`: the node agent daemon. It registers this machine as a Node with the
//! control plane at `--server`, runs the pods bound to it with runc or crun, and
//! serves their logs.
//!
//! The `cox` binary is also the container shim: the agent links
//! `<root>/bin/coxswain-shim` to itself, and `main` runs `shim::main` when started
//! under that name. The first SIGTERM or Ctrl-C stops the agent and leaves the pods
//! running (a new agent re-adopts them); a second one exits at once.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use coxswain_node_agent::AgentConfig;
use coxswain_node_agent::agent::{
    AgentDaemonConfig, CertificateRotation, DEFAULT_LOGS_LISTEN, NodeNetworkConfig, ServerTls,
    worker_deps,
};
use coxswain_node_agent::network::routes::HostRoutes;
use coxswain_node_agent::runtime::RuntimeKind;
use coxswain_node_agent::sandbox::{CgroupVersion, cgroup};
use tokio_util::sync::CancellationToken;

/// The name under which `cox` runs as the container shim.
pub const SHIM_NAME: &str = "coxswain-shim";

/// Arguments of `cox agent`.
#[derive(Args)]
pub struct AgentArgs {
    /// Logging: `--log-format text|json`, `--log-level`.
    #[command(flatten)]
    pub log: super::server::LogArgs,
    /// The control plane's URL, e.g. http://127.0.0.1:6443, https://HOST:PORT (`cox server
    /// --secure-listen`, with --ca-file/--client-cert/--client-key) or unix:///path/to/socket
    /// (`cox server --listen-unix`).
    #[arg(long)]
    pub server: String,
    /// The cluster CA certificate (PEM) an `https://` server must present a certificate of.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// This node's client certificate (PEM; CN `system:node:<name>`, O `system:nodes`)
    /// for an `https://` server. The agent does not rotate it (the operator does).
    #[arg(long, value_name = "FILE", requires_all = ["ca_file", "client_key"], conflicts_with = "bootstrap_token")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["ca_file", "client_cert"])]
    pub client_key: Option<PathBuf>,
    /// Join an `https://` server with this bootstrap token (`cox token create`): the agent
    /// asks for its node certificate and keeps it in `<root>/pki` (kubelet's TLS bootstrap),
    /// renews it before it expires (kubelet's `--rotate-certificates`), and joins again
    /// with the token if it finds it expired. With only `--ca-file`, a certificate already
    /// in `<root>/pki` is used and renewed.
    #[arg(long, value_name = "TOKEN", requires = "ca_file")]
    pub bootstrap_token: Option<String>,
    /// This node's name.
    #[arg(long)]
    pub node_name: String,
    /// The agent's state directory (pods, containers, images, runtime state).
    #[arg(long, default_value = "/var/lib/coxswain/agent")]
    pub root: PathBuf,
    /// The OCI runtime: runc or crun (default: runc if installed, else crun).
    #[arg(long, value_parser = parse_runtime)]
    pub runtime: Option<RuntimeKind>,
    /// The node's InternalIP (default: the first non-loopback IPv4 address).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Extra node labels, key=value,...
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,
    /// The cgroup under which pod cgroups are made.
    #[arg(long, default_value = "coxswain")]
    pub cgroup_root: String,
    /// A host path prefix hostPath volumes may use (repeatable; none by default).
    #[arg(long = "allow-host-path")]
    pub allow_host_paths: Vec<PathBuf>,
    /// A registry (`HOST:PORT`) to pull images from over plain HTTP instead of HTTPS;
    /// repeatable. Images naming a registry (`host/repo:tag`) are pulled when not
    /// imported.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Where the log service (the kubelet port) listens; port 0 picks a free one.
    #[arg(long, default_value = DEFAULT_LOGS_LISTEN)]
    pub logs_listen: SocketAddr,
    /// Keep pods on loopback only: no CNI, no node-local DNS, no routes (tests,
    /// hollow nodes).
    #[arg(long)]
    pub no_cni: bool,
    /// The Linux bridge pods are attached to (its address is the pod CIDR's first).
    #[arg(long, default_value = "cox0")]
    pub bridge: String,
    /// An operator's CNI config directory: its first conflist (lexical order) is used as it
    /// is, instead of coxswain's own bridge conflist for the node's pod CIDR; the agent then
    /// makes no bridge and runs no node-local DNS (kubelet's `--cni-conf-dir`).
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
    /// Where CNI plugins are looked for, colon-separated (default: $CNI_PATH or
    /// /usr/lib/cni:/opt/cni/bin).
    #[arg(long)]
    pub cni_path: Option<String>,
    /// The node-local DNS server's port on the bridge address; 0 runs none (pods
    /// then keep the host's resolv.conf).
    #[arg(long, default_value_t = 53)]
    pub dns_port: u16,
    /// Don't manage host-gw routes to other nodes' pod CIDRs.
    #[arg(long)]
    pub no_host_routes: bool,
    /// Where device plugins register (`kubelet.sock`) and put their sockets
    /// (default: <root>/device-plugins).
    #[arg(long)]
    pub device_plugin_dir: Option<PathBuf>,
    /// Run no device manager (containers requesting GPUs are refused).
    #[arg(long)]
    pub no_devices: bool,
    /// Where the kubelet's PodResources API is served, for monitoring agents such as
    /// dcgm-exporter or `cox-nvidia-plugin --pod-resources-socket`
    /// (default: <root>/pod-resources/kubelet.sock).
    #[arg(long)]
    pub pod_resources_socket: Option<PathBuf>,
    /// A CSI driver on this node, `NAME=unix:///path/csi.sock` (repeatable).
    #[arg(long = "csi-driver", value_parser = parse_csi_driver)]
    pub csi_drivers: Vec<coxswain_node_agent::csi::CsiDriverConfig>,
    /// The GPU plugin's Prometheus endpoint (`cox-nvidia-plugin --metrics-listen ADDR`:
    /// `http://ADDR/metrics`); its per-GPU utilization and health are served at
    /// `/metrics/gpus` on the logs port for `cox top gpus`.
    #[arg(long, value_parser = parse_gpu_metrics_url)]
    pub gpu_metrics_url: Option<String>,
}

fn parse_gpu_metrics_url(text: &str) -> Result<String, String> {
    if text.starts_with("http://") || text.starts_with("https://") {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not an http:// URL (e.g. http://127.0.0.1:9400/metrics)"
        ))
    }
}

fn parse_csi_driver(value: &str) -> Result<coxswain_node_agent::csi::CsiDriverConfig, String> {
    value
        .parse()
        .map_err(|e: coxswain_node_agent::csi::CsiError| e.to_string())
}

fn parse_cni_path(value: &str) -> Vec<PathBuf> {
    value
        .split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn parse_runtime(value: &str) -> Result<RuntimeKind, String> {
    RuntimeKind::parse(value).ok_or_else(|| format!("{value:?} is not runc or crun"))
}

fn parse_label(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{value:?} is not key=value")),
    }
}

/// Runs `cox agent` until a signal stops it.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    super::server::init_logging(&args.log);
    if !running_as_root() {
        bail!("cox agent must run as root: it makes namespaces, cgroups and mounts");
    }
    std::fs::create_dir_all(&args.root)
        .with_context(|| format!("creating the agent root {}", args.root.display()))?;
    if cgroup::detect().version() == CgroupVersion::V1 {
        // crun refuses hybrid hosts while the unified hierarchy holds a controller.
        let released = cgroup::v1::release_unified_controllers(Path::new("/sys/fs/cgroup"))
            .context("moving controllers off the unified cgroup hierarchy")?;
        if !released.is_empty() {
            eprintln!("cox agent: mounted {released:?} as v1 hierarchies (hybrid cgroup host)");
        }
    }
    let shim = link_shim(&args.root)?;
    let mut config = AgentConfig::new(&args.root);
    config.cgroup_root = args.cgroup_root.clone();
    config.allowed_host_paths = args.allow_host_paths.clone();
    config.insecure_registries = args.insecure_registries.clone();
    let deps = worker_deps(&config, args.runtime, shim)?;
    let read = |flag: &str, path: &PathBuf| {
        std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))
    };
    let mut rotation = None;
    let server_tls = match (&args.ca_file, &args.client_cert, &args.client_key) {
        (Some(ca), Some(cert), Some(key)) => Some(ServerTls {
            ca_pem: read("--ca-file", ca)?,
            cert_pem: read("--client-cert", cert)?,
            key_pem: read("--client-key", key)?,
        }),
        (Some(ca), None, None) => {
            let pki = args.root.join("pki");
            if args.bootstrap_token.is_none() && !pki.join("node.crt").exists() {
                anyhow::bail!(
                    "--ca-file needs --client-cert and --client-key, or --bootstrap-token"
                );
            }
            let ca_pem = read("--ca-file", ca)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            let tls = runtime.block_on(coxswain_node_agent::agent::bootstrap::node_credentials(
                &args.server,
                &ca_pem,
                args.bootstrap_token.as_deref(),
                &args.node_name,
                &pki,
                std::time::Duration::from_secs(60),
            ))?;
            let mut renewal = CertificateRotation::new(pki);
            renewal.bootstrap_token = args.bootstrap_token.clone();
            rotation = Some(renewal);
            Some(tls)
        }
        _ => None,
    };
    let mut daemon = AgentDaemonConfig::new(args.server, args.node_name);
    daemon.server_tls = server_tls;
    daemon.certificate_rotation = rotation;
    daemon.node_ip = args.node_ip;
    daemon.node_labels = args.node_labels.into_iter().collect();
    daemon.logs_listen = args.logs_listen;
    daemon.csi_drivers = args.csi_drivers.clone();
    daemon.gpu_metrics_url = args.gpu_metrics_url.clone();
    if !args.no_devices {
        daemon.device_plugin_dir = Some(
            args.device_plugin_dir
                .clone()
                .unwrap_or_else(|| args.root.join("device-plugins")),
        );
    }
    daemon.pod_resources_socket = Some(
        args.pod_resources_socket
            .clone()
            .unwrap_or_else(|| args.root.join("pod-resources").join("kubelet.sock")),
    );
    if !args.no_cni {
        let mut network = NodeNetworkConfig::new(&args.root);
        network.bridge = args.bridge.clone();
        network.cni_path = args.cni_path.as_deref().map(parse_cni_path);
        network.dns_port = (args.dns_port != 0).then_some(args.dns_port);
        network.conf_dir = args.cni_conf_dir.clone();
        network
            .validate()
            .map_err(|e| anyhow::anyhow!("--bridge: {e}"))?;
        daemon.network = Some(network);
        if !args.no_host_routes {
            daemon.host_routes = Some(HostRoutes::system());
        }
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        coxswain_node_agent::agent::run(daemon, deps, shutdown).await
    })?;
    eprintln!("cox agent: stopped; pods are left running");
    Ok(())
}

/// Makes `<root>/bin/coxswain-shim` a link to this binary.
fn link_shim(root: &Path) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the cox binary")?;
    let dir = root.join("bin");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let link = dir.join(SHIM_NAME);
    if std::fs::read_link(&link).ok().as_deref() != Some(exe.as_path()) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&exe, &link)
            .with_context(|| format!("linking {} to {}", link.display(), exe.display()))?;
    }
    Ok(link)
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Cancels `shutdown` on the first SIGTERM or Ctrl-C and exits on the second.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    let mut signals = 0;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        signals += 1;
        if signals == 1 {
            eprintln!("cox agent: stopping, pods keep running (signal again to exit at once)");
            shutdown.cancel();
        } else {
            std::process::exit(130);
        }
    }
}
