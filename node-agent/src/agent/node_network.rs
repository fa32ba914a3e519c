//! The daemon's pod network: coxswain's CNI conflist for the pod CIDR the control
//! plane assigns at Register, the bridge made up front with its gateway address, and
//! the node-local DNS server listening on that address.
//!
//! ```text
//! Register ─▶ spec.podCIDR ─▶ CniNetwork (conflist, host-local, result cache)
//!                          ├─▶ ip link add <bridge>; ip addr replace <gateway>/<prefix>
//!                          ├─▶ DeferredNetwork::set  (pod workers stop waiting)
//!                          └─▶ DnsServer on <gateway>:53 (UDP + TCP), Resolve RPC
//! ```
//!
//! Pod workers exist before Register answers, so they get a [`DeferredNetwork`]:
//! every call waits (bounded) until the real network is set, and fails with a
//! retryable error otherwise. A network that cannot be configured (the bridge or
//! the DNS address refused, a bad CIDR) becomes an [`Unconfigured`] one, so pods
//! report *why* in their status and pods that never got an address can still be
//! deleted; the next Register tries again. With [`NodeNetworkConfig::conf_dir`] the
//! operator's conflist is used instead ([`ConfDirNetwork`], loaded again when the
//! directory changes), with no bridge and no node-local DNS made by the agent. A restarted agent gets the same CIDR back from the
//! control plane and therefore the same conflist, IPAM directory and result cache:
//! it re-adopts its pods' attachments and tears old ones down from what was persisted.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use coxswain_api::k8s::Pod;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::resolver::RpcResolver;
use crate::network::dns::{self, DnsServer};
use crate::network::{
    ClusterDns, CniNetwork, CniNetworkConfig, ConfDirNetwork, NetworkError, NetworkSource, PodIps,
    PodNetwork, Unconfigured,
};

/// How long a pod network call waits for the pod CIDR before failing (the worker retries).
const WAIT_FOR_NETWORK: Duration = Duration::from_secs(10);

/// How the daemon puts pods on the network (see the module docs).
#[derive(Debug, Clone)]
pub struct NodeNetworkConfig {
    /// The agent root; CNI state lives in `<root>/cni`.
    pub agent_root: PathBuf,
    /// The Linux bridge the pods hang off (at most 15 bytes), `cox0` by default.
    pub bridge: String,
    /// CNI_PATH override; `None`: `$CNI_PATH` or `/usr/lib/cni:/opt/cni/bin`.
    pub cni_path: Option<Vec<PathBuf>>,
    /// The node-local DNS server's port on the gateway address; `None`: no DNS
    /// server, and pods get the host's resolv.conf.
    pub dns_port: Option<u16>,
    /// An operator's conflist directory used as it is instead of coxswain's own
    /// conflist for the pod CIDR; the agent then makes no bridge and runs no
    /// node-local DNS (pods get the host's resolv.conf).
    pub conf_dir: Option<PathBuf>,
}

impl NodeNetworkConfig {
    /// Bridge `cox0`, DNS on port 53, plugins from the default CNI_PATH.
    pub fn new(agent_root: impl Into<PathBuf>) -> Self {
        Self {
            agent_root: agent_root.into(),
            bridge: "cox0".into(),
            cni_path: None,
            dns_port: Some(53),
            conf_dir: None,
        }
    }

    /// Checks the bridge name (Linux interface names are 1 to 15 bytes, no `/`, no spaces).
    pub fn validate(&self) -> Result<(), NetworkError> {
        let b = &self.bridge;
        if b.is_empty() || b.len() > 15 || b.contains(['/', ' ', ':']) {
            return Err(NetworkError::Config(format!(
                "bridge {b:?}: must be 1 to 15 characters without '/', ':' or spaces"
            )));
        }
        Ok(())
    }
}

/// A [`PodNetwork`] that is configured once the node's pod CIDR is known.
#[derive(Default)]
pub struct DeferredNetwork {
    slot: Mutex<Option<Arc<dyn PodNetwork>>>,
    ready: Condvar,
}

impl DeferredNetwork {
    /// An unconfigured network.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the real network; callers waiting go on with it. Later calls replace it.
    pub fn set(&self, network: Arc<dyn PodNetwork>) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(network);
        self.ready.notify_all();
    }

    /// Whether the real network is set.
    pub fn is_set(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Arc<dyn PodNetwork>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn wait(&self) -> Result<Arc<dyn PodNetwork>, NetworkError> {
        let guard = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .ready
            .wait_timeout_while(guard, WAIT_FOR_NETWORK, |slot| slot.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.clone().ok_or_else(|| {
            NetworkError::Config(
                "the node has no pod CIDR yet (waiting for the control plane to register it)"
                    .into(),
            )
        })
    }
}

impl PodNetwork for DeferredNetwork {
    fn setup(&self, pod: &Pod, netns: &Path) -> Result<PodIps, NetworkError> {
        self.wait()?.setup(pod, netns)
    }

    fn teardown(&self, uid: &str, netns: &Path) -> Result<(), NetworkError> {
        self.wait()?.teardown(uid, netns)
    }

    fn attached(&self) -> Result<BTreeSet<String>, NetworkError> {
        self.wait()?.attached()
    }

    fn cluster_dns(&self) -> Option<ClusterDns> {
        self.current()?.cluster_dns()
    }

    fn host_ip(&self) -> Option<IpAddr> {
        self.current()?.host_ip()
    }
}

/// The daemon's side of the pod network: turns the Register answer into a
/// configured [`DeferredNetwork`] and a running DNS server.
pub struct NodeNetwork {
    config: NodeNetworkConfig,
    target: Arc<DeferredNetwork>,
    node_ip: Option<IpAddr>,
    channel: watch::Receiver<Option<Channel>>,
    shutdown: CancellationToken,
    /// The CIDR configured, once done.
    configured: Option<String>,
}

impl NodeNetwork {
    /// Configures `target` when [`Self::registered`] is called; DNS asks the
    /// control plane through whichever `channel` is up.
    pub fn new(
        config: NodeNetworkConfig,
        target: Arc<DeferredNetwork>,
        node_ip: Option<IpAddr>,
        channel: watch::Receiver<Option<Channel>>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            config,
            target,
            node_ip,
            channel,
            shutdown,
            configured: None,
        }
    }

    /// Register answered with `pod_cidr` (possibly none yet) and `cluster_domain`.
    /// The first CIDR configures the network; a different one later is refused
    /// (the pods' addresses are in the first one) with an error in the log.
    pub async fn registered(&mut self, pod_cidr: Option<&str>, cluster_domain: &str) {
        if let Some(dir) = self.config.conf_dir.clone() {
            if self.configured.is_none() {
                self.configure_conf_dir(dir);
            }
            return;
        }
        let Some(cidr) = pod_cidr else {
            tracing::warn!("the control plane gave this node no pod CIDR; pods wait for one");
            return;
        };
        match &self.configured {
            Some(done) if done == cidr => return,
            Some(done) => {
                tracing::error!(
                    "the control plane now assigns pod CIDR {cidr}, but this agent's pods are in {done}; keeping {done} (restart the agent with a clean root to move)"
                );
                return;
            }
            None => {}
        }
        let domain = if cluster_domain.is_empty() {
            "cluster.local"
        } else {
            cluster_domain
        };
        match self.configure(cidr, domain).await {
            Ok(gateway) => {
                tracing::info!(pod_cidr = %cidr, %gateway, bridge = %self.config.bridge, "pod network ready");
                self.configured = Some(cidr.to_string());
            }
            Err(e) => {
                tracing::error!(pod_cidr = %cidr, "pod network: {e}");
                // Pods say why they wait; the next Register tries again.
                self.target.set(Arc::new(Unconfigured {
                    reason: format!("pod network for pod CIDR {cidr}: {e}"),
                    results_dir: CniNetworkConfig::for_pod_cidr(&self.config.agent_root, cidr)
                        .results_dir(),
                }));
            }
        }
    }

    /// Uses the operator's conflist directory `dir` (loaded when pods need it).
    fn configure_conf_dir(&mut self, dir: PathBuf) {
        let mut cni = CniNetworkConfig::for_pod_cidr(&self.config.agent_root, "");
        cni.source = NetworkSource::ConfDir(dir.clone());
        if let Some(path) = &self.config.cni_path {
            cni.cni_path = path.clone();
        }
        cni.node_ip = self.node_ip;
        match ConfDirNetwork::new(cni) {
            Ok(network) => {
                tracing::info!(conf_dir = %dir.display(), "pod network from the operator's conflist directory");
                self.target.set(Arc::new(network));
                self.configured = Some(dir.display().to_string());
            }
            Err(e) => tracing::error!(conf_dir = %dir.display(), "pod network: {e}"),
        }
    }

    async fn configure(&self, cidr: &str, domain: &str) -> Result<IpAddr, NetworkError> {
        self.config.validate()?;
        let mut cni = CniNetworkConfig::for_pod_cidr(&self.config.agent_root, cidr);
        cni.source = NetworkSource::PodCidr {
            cidr: cidr.to_string(),
            bridge: self.config.bridge.clone(),
        };
        if let Some(path) = &self.config.cni_path {
            cni.cni_path = path.clone();
        }
        cni.cluster_domain = domain.to_string();
        cni.node_ip = self.node_ip;
        if self.config.dns_port.is_none() {
            // No node-local server: pods keep the host's resolver.
            cni.nameserver = None;
        }
        let bridge = self.config.bridge.clone();
        let prefix = prefix_of(cidr)?;
        let network = tokio::task::spawn_blocking(move || {
            let network = CniNetwork::new(cni)?;
            let gateway = network
                .gateway()
                .ok_or_else(|| NetworkError::Config("the pod CIDR has no gateway".into()))?;
            ensure_bridge(&bridge, gateway, prefix)?;
            Ok::<_, NetworkError>(network)
        })
        .await
        .map_err(|e| NetworkError::Config(format!("network setup task: {e}")))??;
        let gateway = network.gateway().expect("checked above");
        if let Some(port) = self.config.dns_port {
            self.start_dns(SocketAddr::new(gateway, port), domain)
                .await?;
            self.target.set(Arc::new(network));
        } else {
            self.target.set(Arc::new(WithoutDns(network)));
        }
        Ok(gateway)
    }

    async fn start_dns(&self, addr: SocketAddr, domain: &str) -> Result<(), NetworkError> {
        let dns_error = |e: dns::DnsError| NetworkError::Config(format!("node-local DNS: {e}"));
        let resolver = Arc::new(RpcResolver::new(self.channel.clone()));
        let server = Arc::new(DnsServer::new(domain, resolver).map_err(dns_error)?);
        let udp = dns::bind_udp(addr).await.map_err(dns_error)?;
        let tcp = dns::bind_tcp(addr).await.map_err(dns_error)?;
        let stop = self.shutdown.clone();
        tokio::spawn(
            server
                .clone()
                .serve_udp(udp, async move { stop.cancelled().await }),
        );
        let stop = self.shutdown.clone();
        tokio::spawn(server.serve_tcp(tcp, async move { stop.cancelled().await }));
        tracing::info!(%addr, %domain, "node-local DNS serving");
        Ok(())
    }
}

/// A CNI network whose pods keep the host's resolv.conf.
struct WithoutDns(CniNetwork);

impl PodNetwork for WithoutDns {
    fn setup(&self, pod: &Pod, netns: &Path) -> Result<PodIps, NetworkError> {
        self.0.setup(pod, netns)
    }

    fn teardown(&self, uid: &str, netns: &Path) -> Result<(), NetworkError> {
        self.0.teardown(uid, netns)
    }

    fn attached(&self) -> Result<BTreeSet<String>, NetworkError> {
        self.0.attached()
    }

    fn host_ip(&self) -> Option<IpAddr> {
        self.0.host_ip()
    }
}

fn prefix_of(cidr: &str) -> Result<u8, NetworkError> {
    cidr.split_once('/')
        .and_then(|(_, p)| p.parse().ok())
        .ok_or_else(|| NetworkError::Config(format!("podCIDR {cidr:?} is not a CIDR")))
}

/// Makes `bridge` exist, up, with `gateway/prefix`, as the bridge plugin would on
/// the first ADD (it accepts a bridge that already has its gateway address), so the
/// DNS server can listen there before any pod exists.
pub fn ensure_bridge(bridge: &str, gateway: IpAddr, prefix: u8) -> Result<(), NetworkError> {
    // Asked of the kernel, not of /sys/class/net: that shows the network namespace sysfs
    // was mounted in, which is not the agent's when it was started with `nsenter --net`
    // (the multi-host test's hosts).
    let exists = Command::new("ip")
        .args(["-o", "link", "show", "dev", bridge])
        .output()
        .is_ok_and(|out| out.status.success());
    if !exists {
        ip(&["link", "add", "name", bridge, "type", "bridge"])?;
    }
    let addr = format!("{gateway}/{prefix}");
    ip(&["addr", "replace", &addr, "dev", bridge])?;
    ip(&["link", "set", bridge, "up"])
}

fn ip(args: &[&str]) -> Result<(), NetworkError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetworkError::Command {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(NetworkError::Command {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::FakeNetwork;

    #[test]
    fn deferred_network_waits_for_the_real_one_and_then_delegates() {
        let deferred = Arc::new(DeferredNetwork::new());
        assert!(!deferred.is_set());
        assert_eq!(deferred.host_ip(), None);
        let waiter = {
            let deferred = deferred.clone();
            std::thread::spawn(move || deferred.attached())
        };
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let fake = Arc::new(FakeNetwork::new(Some(ip)));
        fake.preattach("uid-1", "10.244.0.5".parse().unwrap());
        deferred.set(fake);
        let attached = waiter.join().unwrap().unwrap();
        assert_eq!(attached, BTreeSet::from(["uid-1".to_string()]));
        assert_eq!(deferred.host_ip(), Some(ip));
    }

    #[test]
    fn bad_bridge_names_and_cidrs_are_refused_naming_them() {
        let mut config = NodeNetworkConfig::new("/tmp/x");
        config.bridge = "a-much-too-long-bridge".into();
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("a-much-too-long-bridge"), "{e}");
        let e = prefix_of("10.0.0.0").unwrap_err().to_string();
        assert!(e.contains("10.0.0.0"), "{e}");
        assert_eq!(prefix_of("10.1.0.0/24").unwrap(), 24);
    }
}
