//! The agent daemon: connects the pod workers of this crate to the control plane's
//! node service (`coxswain.node.v1alpha1.NodeService`, gRPC over HTTP/2).
//!
//! ```text
//! run ─┬─ ControlPlaneLink: connect ─▶ Register ─▶ WatchPods + RenewLease ─┐
//!      │        ▲ (back-off)                                            │ fails, or
//!      │        └───────────────────────────────────────────────────────┘ rotated
//!      ├─ cert_rotation: renews the node's own client certificate at 70–90 %
//!      │  of its lifetime and hands it to the link (`https://` + `<root>/pki`)
//!      ├─ PodSupervisor: one thread per pod uid (PodWorker::step), a status
//!      │  reporter task per pod (UpdatePodStatus), PodTerminated after removal
//!      └─ LogService: AgentService.ContainerLogs on the kubelet port, and
//!         `GET /metrics` (pod and container CPU/memory, `crate::usage`),
//!         `/metrics/resource` (kubelet's, `crate::resource_metrics`) and
//!         `/metrics/gpus` (the GPU plugin's figures, `gpu_metrics`)
//! ```
//!
//! Stopping (the `shutdown` token) detaches every pod thread without touching its
//! containers, as a kubelet does: a new agent on the same root re-adopts them.

mod backoff;
pub mod bootstrap;
mod cert_files;
pub mod cert_rotation;
mod control_plane_link;
mod deps;
pub mod device_report;
pub mod events;
pub mod gpu_metrics;
pub mod host;
pub mod host_routes;
pub mod log_files;
mod log_service;
mod node_csr;
pub mod node_network;
pub mod node_object;
pub mod pod_resources;
mod pod_thread;
mod pods;
pub mod resolver;
mod sa_tokens;
mod server_endpoint;
mod status_report;
pub mod volume_provisioner;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coxswain_proto::node::v1alpha1::agent_service_server::AgentServiceServer;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use cert_rotation::CertificateRotation;
pub use deps::worker_deps;
pub use log_service::LogService;
pub use node_network::{DeferredNetwork, NodeNetworkConfig};
pub use pods::PodDirectory;
pub use server_endpoint::{ServerEndpoint, ServerTls};

use crate::csi::{CsiDriverConfig, CsiDrivers, CsiVolumes};
use crate::devices::{DeviceManager, DeviceManagerConfig};
use crate::mounts::SystemMounter;
use crate::network::routes::HostRoutes;
use crate::runtime::RuntimeError;
use crate::volumes::VolumeManager;
use crate::worker::WorkerDeps;
use control_plane_link::ControlPlaneLink;
use host::HostFacts;
use node_network::NodeNetwork;
use pods::PodSupervisor;

/// The kubelet's port, where the agent serves logs by default.
pub const DEFAULT_LOGS_LISTEN: &str = "127.0.0.1:10250";

/// How the daemon reaches the control plane and describes its node.
#[derive(Debug, Clone)]
pub struct AgentDaemonConfig {
    /// The control plane's URL: `http://host:port`, `https://host:port` (with
    /// [`AgentDaemonConfig::server_tls`]), or `unix:///path` for a socket file.
    pub server: String,
    /// The CA and client certificate for an `https://` server.
    pub server_tls: Option<ServerTls>,
    /// Renew [`AgentDaemonConfig::server_tls`]'s certificate before it expires (kubelet's
    /// `--rotate-certificates`): only for a pair the agent obtained itself under
    /// `<root>/pki`, never for an operator's files.
    pub certificate_rotation: Option<CertificateRotation>,
    /// This node's name.
    pub node_name: String,
    /// The node's InternalIP; `None`: the first non-loopback IPv4 of the host.
    pub node_ip: Option<IpAddr>,
    /// Labels added to the node's own (`kubernetes.io/hostname`, `os`, `arch`).
    pub node_labels: BTreeMap<String, String>,
    /// Where the log service listens; port 0 picks a free port (reported in the Node).
    pub logs_listen: SocketAddr,
    /// How often the node's Lease is renewed.
    pub lease_interval: Duration,
    /// Shortest time between two status writes of one pod.
    pub status_interval: Duration,
    /// First and largest delay between attempts to reach the control plane.
    pub reconnect_initial: Duration,
    /// Largest delay between attempts to reach the control plane.
    pub reconnect_max: Duration,
    /// The pod network (CNI on the assigned pod CIDR, node-local DNS); `None`
    /// keeps the network the [`WorkerDeps`] were given (loopback-only pods).
    pub network: Option<NodeNetworkConfig>,
    /// Where the host-gw routes to other nodes' pod CIDRs go; `None`: no routes.
    pub host_routes: Option<HostRoutes>,
    /// The device-plugin directory (`kubelet.sock` is served there); `None`: no
    /// device manager, and containers requesting extended resources are refused.
    pub device_plugin_dir: Option<PathBuf>,
    /// Where the kubelet's PodResources API is served (`None`: not served); monitoring
    /// agents read which pod holds which device there.
    pub pod_resources_socket: Option<PathBuf>,
    /// The node's CSI drivers (`--csi-driver NAME=unix:///path`); empty: pods
    /// with claims of CSI volumes wait with an error naming the driver.
    pub csi_drivers: Vec<CsiDriverConfig>,
    /// How long the first Register waits for the CSI drivers to answer (a driver
    /// reached later is announced by registering again).
    pub csi_wait: Duration,
    /// The GPU plugin's metrics URL (`cox-nvidia-plugin --metrics-listen`), relayed per
    /// advertised GPU at `/metrics/gpus` on the logs port ([`gpu_metrics`]).
    pub gpu_metrics_url: Option<String>,
}

impl AgentDaemonConfig {
    /// A configuration for node `node_name` of the control plane at `server`, with
    /// kubelet's defaults (Lease every 10 s, logs on 127.0.0.1:10250).
    pub fn new(server: impl Into<String>, node_name: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            server_tls: None,
            certificate_rotation: None,
            node_name: node_name.into(),
            node_ip: None,
            node_labels: BTreeMap::new(),
            logs_listen: DEFAULT_LOGS_LISTEN
                .parse()
                .expect("a valid default address"),
            lease_interval: Duration::from_secs(10),
            status_interval: Duration::from_millis(200),
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            network: None,
            host_routes: None,
            device_plugin_dir: None,
            pod_resources_socket: None,
            csi_drivers: Vec::new(),
            csi_wait: Duration::from_secs(10),
            gpu_metrics_url: None,
        }
    }
}

/// Errors that stop the agent daemon (everything else is retried).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The server URL is not one the agent can dial.
    #[error("server URL {url:?}: {message}")]
    ServerUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The node name is not a valid Kubernetes name.
    #[error("node name {0:?}: must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.')")]
    NodeName(String),
    /// The log service's address could not be bound.
    #[error("logs listen address {addr}: {source} (is a kubelet or another agent using the port?)")]
    LogsListen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The shim binary is not there.
    #[error(
        "container shim {path}: not found (build coxswain-shim, or run the agent from the cox binary)"
    )]
    ShimMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// No OCI runtime could be set up.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The device manager could not start.
    #[error("device manager: {0}")]
    Devices(#[from] crate::devices::Error),
    /// The PodResources socket could not be served.
    #[error("PodResources socket {}: {source}", path.display())]
    PodResources {
        /// The socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The CSI mount journal could not be read.
    #[error(transparent)]
    Csi(#[from] crate::csi::CsiError),
}

/// A node agent: create it, take its [`NodeAgent::pod_cidr`] receiver if needed, then
/// [`NodeAgent::run`] it.
pub struct NodeAgent {
    config: AgentDaemonConfig,
    deps: WorkerDeps,
    pod_cidr: watch::Sender<Option<String>>,
}

impl NodeAgent {
    /// An agent for `config` running pods with `deps` (see [`worker_deps`]).
    pub fn new(config: AgentDaemonConfig, deps: WorkerDeps) -> Self {
        Self {
            config,
            deps,
            pod_cidr: watch::channel(None).0,
        }
    }

    /// The pod CIDR the control plane assigned this node (`spec.podCIDR`), once known.
    pub fn pod_cidr(&self) -> watch::Receiver<Option<String>> {
        self.pod_cidr.subscribe()
    }

    /// Runs until `shutdown` is cancelled, then stops without stopping any pod.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let config = self.config;
        if !valid_node_name(&config.node_name) {
            return Err(AgentError::NodeName(config.node_name));
        }
        let endpoint = ServerEndpoint::parse(&config.server, config.server_tls.as_ref())?;
        let listener = tokio::net::TcpListener::bind(config.logs_listen)
            .await
            .map_err(|source| AgentError::LogsListen {
                addr: config.logs_listen,
                source,
            })?;
        let logs_addr = listener
            .local_addr()
            .map_err(|source| AgentError::LogsListen {
                addr: config.logs_listen,
                source,
            })?;
        let runtime_name = self.deps.runtime.name().to_string();
        let node_ip = config.node_ip;
        let facts = tokio::task::spawn_blocking(move || HostFacts::read(&runtime_name, node_ip))
            .await
            .unwrap_or_else(|_| HostFacts::read("unknown", node_ip));
        let node = node_object::node_json(
            &config.node_name,
            &facts,
            &config.node_labels,
            logs_addr.port(),
            &control_plane_link::heartbeat_time(),
        );
        tracing::info!(node = %config.node_name, server = %config.server, logs = %logs_addr, runtime = %facts.runtime_version, "agent starting");

        let stop = shutdown.child_token();
        let directory = PodDirectory::default();
        let logs = LogService::new(self.deps.config.clone(), directory.clone());
        let logs_stop = stop.clone();
        let inventory = gpu_metrics::InventorySource::default();
        // The kubelet port: logs over gRPC (h2c) and `GET /metrics` over HTTP/1.1.
        let router = tonic::service::Routes::new(AgentServiceServer::new(logs))
            .prepare()
            .into_axum_router()
            .merge(crate::usage::metrics_router(
                self.deps.sandbox.clone(),
                self.deps.config.cgroup_root.clone(),
                directory.clone(),
            ))
            .merge(gpu_metrics::router(
                config.gpu_metrics_url.clone(),
                inventory.clone(),
            ));
        let log_server = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(logs_stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!("log service on {logs_addr}: {e}");
            }
        });

        let (channel_tx, channel_rx) = watch::channel(None);
        let mut deps = self.deps;
        let network = config.network.clone().map(|network_config| {
            let deferred = Arc::new(DeferredNetwork::new());
            deps.network = deferred.clone();
            NodeNetwork::new(
                network_config,
                deferred,
                facts.internal_ip,
                channel_rx.clone(),
                stop.clone(),
            )
        });
        let mut device_manager = None;
        if let Some(dir) = config.device_plugin_dir.clone() {
            let manager = DeviceManager::start(
                DeviceManagerConfig::new(dir, config.node_name.clone()),
                stop.clone(),
            )
            .await?;
            let events = events::EventSender::start(
                config.node_name.clone(),
                channel_rx.clone(),
                stop.clone(),
            );
            let manager = manager.with_events(Arc::new(events));
            tokio::spawn(device_report::run(
                config.node_name.clone(),
                manager.watch_inventory(),
                channel_rx.clone(),
                stop.clone(),
            ));
            let _ = inventory.set(manager.watch_inventory());
            deps.devices = Arc::new(manager.clone());
            device_manager = Some(manager);
        }
        if let Some(socket) = &config.pod_resources_socket {
            let service =
                pod_resources::PodResourcesService::new(directory.clone(), device_manager);
            pod_resources::serve(socket, service, stop.clone()).map_err(|source| {
                AgentError::PodResources {
                    path: socket.clone(),
                    source,
                }
            })?;
        }
        if let Some(routes) = config.host_routes.clone() {
            tokio::spawn(host_routes::run(
                config.node_name.clone(),
                routes,
                channel_rx.clone(),
                stop.clone(),
            ));
        }
        let mut csi_node_ids = None;
        if !config.csi_drivers.is_empty() {
            let drivers = CsiDrivers::default();
            drivers.start(&config.csi_drivers, &stop);
            if !drivers
                .wait_for(config.csi_drivers.len(), config.csi_wait)
                .await
            {
                tracing::warn!(
                    "not every CSI driver answered within {:?}; registering without them (they are announced once up)",
                    config.csi_wait
                );
            }
            let csi = CsiVolumes::open(
                &deps.config.root,
                drivers.clone(),
                tokio::runtime::Handle::current(),
            )?;
            deps.volumes = Arc::new(
                VolumeManager::new(
                    deps.config.allowed_host_paths.clone(),
                    Arc::new(SystemMounter),
                )
                .with_csi(Arc::new(csi)),
            );
            csi_node_ids = Some(drivers.node_ids());
            tokio::spawn(volume_provisioner::run(
                config.node_name.clone(),
                drivers,
                channel_rx.clone(),
                stop.clone(),
            ));
        }
        deps.volumes
            .set_token_source(Arc::new(sa_tokens::TokenManager::new(
                config.node_name.clone(),
                channel_rx.clone(),
                tokio::runtime::Handle::current(),
            )));
        if let Some(service) = kubernetes_service(&config.server) {
            let mut pod_config = (*deps.config).clone();
            pod_config.kubernetes_service = Some(service);
            deps.config = Arc::new(pod_config);
        }
        let (mut pods, mut exits) = PodSupervisor::new(
            config.node_name.clone(),
            deps,
            channel_rx,
            directory,
            config.status_interval,
            stop.clone(),
        );
        let credentials = match (&config.server_tls, &config.certificate_rotation) {
            (Some(tls), Some(rotation)) => {
                let (sender, receiver) = watch::channel(tls.clone());
                tokio::spawn(cert_rotation::run(
                    rotation.clone(),
                    config.server.clone(),
                    config.node_name.clone(),
                    sender,
                    stop.clone(),
                ));
                Some(receiver)
            }
            _ => None,
        };
        let mut link = ControlPlaneLink {
            endpoint,
            credentials,
            rotated: false,
            node_name: config.node_name.clone(),
            node,
            lease_interval: config.lease_interval,
            backoff: Backoff::new(config.reconnect_initial, config.reconnect_max),
            channel: channel_tx,
            pod_cidr: self.pod_cidr,
            network,
            csi_node_ids,
        };
        link.run(&mut pods, &mut exits, &stop).await;
        pods.detach_all().await;
        stop.cancel();
        let _ = log_server.await;
        tracing::info!(node = %config.node_name, "agent stopped; pods left running");
        Ok(())
    }
}

/// The API server's address for containers: host and port of an `https://` server URL
/// (the TLS listener serves the REST API too); none for plain or Unix-socket servers,
/// whose listeners containers could not use.
fn kubernetes_service(server: &str) -> Option<(String, u16)> {
    if !server.starts_with("https://") {
        return None;
    }
    let uri: tonic::transport::Uri = server.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), uri.port_u16().unwrap_or(443)))
}

/// Waits until a channel to the control plane is up; `None` once `shutdown` fires.
pub(crate) async fn connected(
    channel: &mut watch::Receiver<Option<tonic::transport::Channel>>,
    shutdown: &CancellationToken,
) -> Option<tonic::transport::Channel> {
    tokio::select! {
        ready = channel.wait_for(Option::is_some) => ready.ok().and_then(|c| c.clone()),
        _ = shutdown.cancelled() => None,
    }
}

/// Runs an agent for `config` with `deps` until `shutdown`; see [`NodeAgent`].
pub async fn run(
    config: AgentDaemonConfig,
    deps: WorkerDeps,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    NodeAgent::new(config, deps).run(shutdown).await
}

fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_reach_the_api_at_the_tls_server_address() {
        assert_eq!(
            kubernetes_service("https://10.0.0.1:6443"),
            Some(("10.0.0.1".into(), 6443))
        );
        assert_eq!(
            kubernetes_service("https://api.example:443/"),
            Some(("api.example".into(), 443))
        );
        assert_eq!(
            kubernetes_service("https://[fd00::1]:6443").unwrap().0,
            "fd00::1"
        );
        assert_eq!(kubernetes_service("http://127.0.0.1:8080"), None);
        assert_eq!(kubernetes_service("unix:///run/cox.sock"), None);
    }

    #[test]
    fn bad_urls_and_node_names_are_refused_with_the_reason() {
        let e = ServerEndpoint::parse("https://x:1", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--ca-file"), "{e}");
        let e = ServerEndpoint::parse("x:1", None).unwrap_err().to_string();
        assert!(e.contains("http://"), "{e}");
        assert!(ServerEndpoint::parse("http://127.0.0.1:6443", None).is_ok());
        assert!(valid_node_name("node-1.example"));
        assert!(!valid_node_name("Node_1"));
        assert!(!valid_node_name(""));
    }
}
