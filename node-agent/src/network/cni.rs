//! [`CniNetwork`]: pods on the node's pod network through the standard CNI
//! plugins (`coxswain-cni`). Either coxswain writes its own conflist for the node's
//! pod CIDR (bridge `cox0` as the pods' gateway, host-local IPAM with its data under
//! the agent root, portmap for hostPorts), or an operator's conflist directory is
//! used as it is. Every pod also gets the `loopback` plugin on `lo`.
//!
//! The ADD results are cached on disk by the CNI library (beside host-local's
//! reservations), so a restarted or SIGKILLed agent tears pods down from what was
//! persisted, with the same `prevResult` and port mappings.
//!
//! `ipMasq` is **off** in coxswain's conflist: with host-gw routes, traffic between
//! pods on different nodes must keep the pod's source address (the bridge plugin
//! masquerades everything leaving the pod CIDR, other nodes' pods included), and
//! nothing may leave the cluster unasked. Egress NAT, where wanted, belongs to an
//! agent-owned rule that exempts the cluster CIDR, not to the bridge plugin.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use coxswain_api::k8s::Pod;
use coxswain_cni::{
    Attachment, Cni, DEFAULT_CNI_PATH, DefaultNetwork, NetworkConfigList, PluginExec, PortMapping,
    ProcessExec, ResultCache, loopback_config_list, parse_cni_path,
};

use super::dns_files::ClusterDns;
use super::{NetworkError, PodIps, PodNetwork};

/// The name of the conflist coxswain writes.
pub const CONFLIST_NAME: &str = "10-coxswain.conflist";

/// The interface name pods get.
pub const POD_IFNAME: &str = "eth0";

/// Where the pod network's config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkSource {
    /// coxswain's own conflist for the node's pod CIDR.
    PodCidr {
        /// The node's pod CIDR, e.g. `10.244.3.0/24`.
        cidr: String,
        /// The Linux bridge (`cox0`).
        bridge: String,
    },
    /// The first conflist (lexical order) of an operator's directory.
    ConfDir(PathBuf),
}

/// How a [`CniNetwork`] is set up.
#[derive(Debug, Clone)]
pub struct CniNetworkConfig {
    /// Where the conflist, host-local's reservations and the result cache live
    /// (`<agent root>/cni`).
    pub state_dir: PathBuf,
    /// The pod network's config.
    pub source: NetworkSource,
    /// CNI_PATH: where plugins are looked for.
    pub cni_path: Vec<PathBuf>,
    /// The cluster's DNS domain (`cluster.local`).
    pub cluster_domain: String,
    /// The nameserver pods get; for [`NetworkSource::PodCidr`] `None` means the
    /// bridge's gateway address (where the node-local DNS server listens).
    pub nameserver: Option<IpAddr>,
    /// The node's address, reported as `status.hostIP`.
    pub node_ip: Option<IpAddr>,
}

impl CniNetworkConfig {
    /// coxswain's own conflist for `pod_cidr` under `<agent_root>/cni`, bridge
    /// `cox0`, CNI_PATH from the environment or `/usr/lib/cni:/opt/cni/bin`.
    pub fn for_pod_cidr(agent_root: &Path, pod_cidr: impl Into<String>) -> Self {
        let path = std::env::var("CNI_PATH").ok().filter(|p| !p.is_empty());
        Self {
            state_dir: agent_root.join("cni"),
            source: NetworkSource::PodCidr {
                cidr: pod_cidr.into(),
                bridge: "cox0".into(),
            },
            cni_path: parse_cni_path(path.as_deref().unwrap_or(DEFAULT_CNI_PATH)),
            cluster_domain: "cluster.local".into(),
            nameserver: None,
            node_ip: None,
        }
    }

    /// Directory of coxswain's conflist.
    pub fn conf_dir(&self) -> PathBuf {
        self.state_dir.join("net.d")
    }

    /// host-local's `dataDir`.
    pub fn ipam_dir(&self) -> PathBuf {
        self.state_dir.join("ipam")
    }

    /// The CNI result cache.
    pub fn results_dir(&self) -> PathBuf {
        self.state_dir.join("results")
    }
}

/// The real [`PodNetwork`]: CNI plugins, results persisted.
pub struct CniNetwork {
    config: CniNetworkConfig,
    cni: Cni,
    net: NetworkConfigList,
    loopback: NetworkConfigList,
    gateway: Option<IpAddr>,
}

impl CniNetwork {
    /// Writes coxswain's conflist (or loads the operator's) and runs plugins as
    /// processes.
    pub fn new(config: CniNetworkConfig) -> Result<Self, NetworkError> {
        Self::with_exec(config, Arc::new(ProcessExec::default()))
    }

    /// Like [`Self::new`] with an explicit plugin runner (a fake in unit tests).
    pub fn with_exec(
        config: CniNetworkConfig,
        exec: Arc<dyn PluginExec>,
    ) -> Result<Self, NetworkError> {
        let (net, gateway) = match &config.source {
            NetworkSource::PodCidr { cidr, bridge } => {
                let gateway = gateway_of(cidr)?;
                let value = coxswain_conflist(cidr, bridge, &config.ipam_dir())?;
                let path = config.conf_dir().join(CONFLIST_NAME);
                write_atomically(&path, &value)?;
                let net = NetworkConfigList::load_file(&path).map_err(config_error)?;
                (net, Some(gateway))
            }
            NetworkSource::ConfDir(dir) => {
                let net = NetworkConfigList::load_dir(dir).map_err(config_error)?;
                (net, None)
            }
        };
        let cache = ResultCache::new(config.results_dir());
        // An agent killed mid-write left its temporary file; nothing else would remove it.
        cache.sweep_temporaries();
        let cni = Cni::new(exec, config.cni_path.clone(), cache);
        Ok(Self {
            config,
            cni,
            net,
            loopback: loopback_config_list(),
            gateway,
        })
    }

    /// The pod network's config list.
    pub fn config_list(&self) -> &NetworkConfigList {
        &self.net
    }

    /// The bridge's address (the pods' gateway), for coxswain's own conflist.
    pub fn gateway(&self) -> Option<IpAddr> {
        self.gateway
    }

    /// The CNI client (for its cache).
    pub fn cni(&self) -> &Cni {
        &self.cni
    }

    fn attachment(&self, uid: &str, netns: &Path, ifname: &str) -> Attachment {
        Attachment::new(uid, netns, ifname)
    }

    /// What is there of `uid`'s attachment: the recorded addresses if its
    /// interface still has them; else whether anything (a cache entry, an `eth0`)
    /// is left that a DEL must clear before a fresh ADD.
    fn existing(&self, uid: &str, netns: &Path) -> Result<Existing, NetworkError> {
        let cached = self
            .cni
            .cached_result(&self.net.name, uid, POD_IFNAME)
            .map_err(|e| cni_error(uid, "cache", e))?;
        let Some(cached) = cached else {
            // An agent killed mid-ADD leaves no cache entry but may leave the veth.
            return Ok(if interface_has(netns, POD_IFNAME, &[]) {
                Existing::Stale
            } else {
                Existing::Absent
            });
        };
        let ips = coxswain_cni::CniResult::from_value(&cached.result)
            .map(|r| pod_ips(&r))
            .unwrap_or_default();
        // Debian's portmap fails CHECK for IPv4-only pods (see docs/cni.md), so the
        // attachment is verified by looking at the interface itself.
        if !ips.is_empty() && interface_has(netns, POD_IFNAME, &ips) {
            return Ok(Existing::Attached(ips));
        }
        Ok(Existing::Stale)
    }
}

impl CniNetwork {
    /// Whether `uid` has no ADD result cached and no pod interface in its netns.
    fn never_attached(&self, uid: &str, netns: &Path) -> Result<bool, NetworkError> {
        let cached = self
            .cni
            .cached_result(&self.net.name, uid, POD_IFNAME)
            .map_err(|e| cni_error(uid, "cache", e))?;
        Ok(cached.is_none() && !interface_has(netns, POD_IFNAME, &[]))
    }
}

/// See [`CniNetwork::existing`].
enum Existing {
    Attached(Vec<IpAddr>),
    Stale,
    Absent,
}

impl PodNetwork for CniNetwork {
    fn setup(&self, pod: &Pod, netns: &Path) -> Result<PodIps, NetworkError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if uid.is_empty() {
            return Err(NetworkError::Config("pod has no metadata.uid".into()));
        }
        let started = Instant::now();
        match self.existing(&uid, netns)? {
            Existing::Attached(ips) => {
                return Ok(PodIps {
                    ips,
                    host_ip: self.config.node_ip,
                });
            }
            // A stale or half-made attachment is removed before a fresh ADD.
            Existing::Stale => self.teardown(&uid, netns)?,
            Existing::Absent => {}
        }
        let lo = self.attachment(&uid, netns, "lo");
        self.cni
            .add(&self.loopback, &lo)
            .map_err(|e| cni_error(&uid, "ADD loopback", e))?;
        let mut eth = self.attachment(&uid, netns, POD_IFNAME);
        eth.args = cni_args(pod, &uid);
        eth.runtime_config.port_mappings = host_ports(pod);
        match self.cni.add(&self.net, &eth) {
            Ok(added) => {
                let ips = pod_ips(&added.result);
                tracing::debug!(pod = %uid, ms = elapsed_ms(started), ?ips, "CNI ADD done");
                Ok(PodIps {
                    ips,
                    host_ip: self.config.node_ip,
                })
            }
            Err(e) => {
                // Nothing is cached after a failed ADD; DEL frees what was made.
                if let Err(del) = self.teardown(&uid, netns) {
                    tracing::warn!(%uid, error = %del, "CNI DEL after a failed ADD");
                }
                Err(cni_error(&uid, "ADD", e))
            }
        }
    }

    fn teardown(&self, uid: &str, netns: &Path) -> Result<(), NetworkError> {
        let started = Instant::now();
        // A DEL must succeed once the pod's namespace is gone (a crash between unmounting it
        // and DEL leaves a plain file there, which the bridge plugin refuses): plugins then
        // get an empty CNI_NETNS, as the spec allows, and release only what the host holds.
        let live_netns = if is_network_namespace(netns) {
            netns
        } else {
            Path::new("")
        };
        let eth = self.attachment(uid, live_netns, POD_IFNAME);
        match self.cni.del(&self.net, &eth) {
            Ok(()) => {}
            Err(coxswain_cni::Error::PluginNotFound { plugin, .. })
                if self.never_attached(uid, netns)? =>
            {
                // The plugin was missing at ADD too, so no plugin ever ran for this pod:
                // nothing to undo, and the pod must stay deletable until it is installed.
                tracing::debug!(pod = %uid, %plugin, "CNI DEL skipped: the plugin is not installed and the pod was never attached");
            }
            Err(e) => return Err(cni_error(uid, "DEL", e)),
        }
        let lo = self.attachment(uid, live_netns, "lo");
        if let Err(e) = self.cni.del(&self.loopback, &lo) {
            // loopback holds nothing on the host: forget it rather than block removal.
            tracing::debug!(%uid, error = %e, "CNI DEL loopback");
            self.cni
                .cache()
                .remove(&self.loopback.name, uid, "lo")
                .map_err(|e| cni_error(uid, "DEL loopback", e))?;
        }
        tracing::debug!(pod = %uid, ms = elapsed_ms(started), "CNI DEL done");
        Ok(())
    }

    fn attached(&self) -> Result<BTreeSet<String>, NetworkError> {
        let entries = self.cni.cache().list().map_err(config_error)?;
        Ok(entries
            .into_iter()
            .filter(|e| e.network_name == self.net.name || e.network_name == self.loopback.name)
            .map(|e| e.container_id)
            .collect())
    }

    fn cluster_dns(&self) -> Option<ClusterDns> {
        let nameserver = self.config.nameserver.or(self.gateway)?;
        Some(ClusterDns {
            nameservers: vec![nameserver],
            domain: self.config.cluster_domain.clone(),
        })
    }

    fn host_ip(&self) -> Option<IpAddr> {
        self.config.node_ip
    }
}

/// Milliseconds since `started`, for the ADD/DEL timing log lines.
fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

fn config_error(e: coxswain_cni::Error) -> NetworkError {
    NetworkError::CniConfig(Box::new(e))
}

fn cni_error(uid: &str, op: &'static str, e: coxswain_cni::Error) -> NetworkError {
    NetworkError::Cni {
        uid: uid.to_string(),
        op,
        source: Box::new(e),
    }
}

/// Whether `path` is a mounted network namespace (nsfs), not a leftover file.
fn is_network_namespace(path: &Path) -> bool {
    use nix::sys::statfs::{NSFS_MAGIC, statfs};
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// coxswain's conflist for `cidr`: the CNI library's default network with
/// `ipMasq` off (see the module docs).
pub fn coxswain_conflist(
    cidr: &str,
    bridge: &str,
    ipam_dir: &Path,
) -> Result<serde_json::Value, NetworkError> {
    let mut net = DefaultNetwork::new(cidr, ipam_dir);
    net.bridge = bridge.to_string();
    let mut value = net.render().map_err(config_error)?;
    value["plugins"][0]["ipMasq"] = serde_json::Value::Bool(false);
    Ok(value)
}

/// The first address of a CIDR: the bridge's (gateway's) address.
pub fn gateway_of(cidr: &str) -> Result<IpAddr, NetworkError> {
    let bad = || NetworkError::Config(format!("podCIDR {cidr:?} is not a CIDR (addr/prefix)"));
    let (addr, _) = cidr.split_once('/').ok_or_else(bad)?;
    match addr.parse::<IpAddr>().map_err(|_| bad())? {
        IpAddr::V4(a) => Ok(IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1)))),
        IpAddr::V6(a) => Ok(IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1)))),
    }
}

fn write_atomically(path: &Path, value: &serde_json::Value) -> Result<(), NetworkError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| NetworkError::io(dir, e))?;
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec_pretty(value).expect("a JSON value serialises");
    std::fs::write(&tmp, body).map_err(|e| NetworkError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| NetworkError::io(path, e))
}

/// The addresses on the pod interface, IPv4 first.
fn pod_ips(result: &coxswain_cni::CniResult) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = result
        .ips_on(POD_IFNAME)
        .iter()
        .filter_map(|c| c.ip().parse().ok())
        .collect();
    if ips.is_empty() {
        // Plugins that do not say which interface an address is on.
        ips = result
            .ips
            .iter()
            .filter_map(|c| c.ip().parse().ok())
            .collect();
    }
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips
}

/// Kubernetes' CNI_ARGS (with `IgnoreUnknown`, so plugins accept the rest).
fn cni_args(pod: &Pod, uid: &str) -> Vec<(String, String)> {
    let meta = &pod.metadata;
    vec![
        ("IgnoreUnknown".into(), "1".into()),
        (
            "K8S_POD_NAMESPACE".into(),
            meta.namespace.clone().unwrap_or_default(),
        ),
        ("K8S_POD_NAME".into(), meta.name.clone().unwrap_or_default()),
        ("K8S_POD_INFRA_CONTAINER_ID".into(), uid.to_string()),
        ("K8S_POD_UID".into(), uid.to_string()),
    ]
}

/// The pod's hostPorts as portmap's `portMappings`.
pub fn host_ports(pod: &Pod) -> Vec<PortMapping> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|h| *h > 0)?;
            Some(PortMapping {
                host_port,
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                host_ip: p.host_ip.clone().filter(|h| !h.is_empty()),
            })
        })
        .collect()
}

/// Whether `ifname` exists in the namespace at `netns` and carries every one of `ips`.
fn interface_has(netns: &Path, ifname: &str, ips: &[IpAddr]) -> bool {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["ip", "-o", "addr", "show", "dev", ifname])
        .output();
    let Ok(out) = out else { return false };
    if !out.status.success() {
        return false;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    ips.iter().all(|ip| text.contains(&format!(" {ip}/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn conflist_is_the_default_network_without_masquerade() {
        let value = coxswain_conflist("10.244.3.0/24", "coxt1", Path::new("/r/cni/ipam")).unwrap();
        let bridge = &value["plugins"][0];
        assert_eq!(bridge["bridge"], "coxt1");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["dataDir"], "/r/cni/ipam");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(value["plugins"][1]["capabilities"]["portMappings"], true);
        let err = coxswain_conflist("10.244.3.7/24", "cox0", Path::new("/r"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("podCIDR"), "{err}");
    }

    #[test]
    fn gateway_is_the_first_address() {
        assert_eq!(
            gateway_of("10.244.3.0/24").unwrap().to_string(),
            "10.244.3.1"
        );
        assert_eq!(gateway_of("fd00::/64").unwrap().to_string(), "fd00::1");
        assert!(gateway_of("nonsense").is_err());
    }

    #[test]
    fn host_ports_become_port_mappings() {
        let p = pod(serde_json::json!({"containers": [
            {"name": "a", "ports": [
                {"containerPort": 80, "hostPort": 8080},
                {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"},
                {"containerPort": 9090},
            ]},
        ]}));
        let ports = host_ports(&p);
        assert_eq!(ports.len(), 2);
        assert_eq!(
            (
                ports[0].host_port,
                ports[0].container_port,
                ports[0].protocol.as_str()
            ),
            (8080, 80, "tcp")
        );
        assert_eq!(ports[1].protocol, "udp");
        assert_eq!(ports[1].host_ip.as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn writes_its_conflist_and_reports_cluster_dns() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CniNetworkConfig::for_pod_cidr(dir.path(), "10.250.0.0/28");
        config.node_ip = Some("192.168.0.10".parse().unwrap());
        let net = CniNetwork::with_exec(
            config,
            Arc::new(coxswain_cni::fake::ScriptedExec::default()),
        )
        .unwrap();
        let written = dir.path().join("cni/net.d").join(CONFLIST_NAME);
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&written).unwrap()).unwrap();
        assert_eq!(
            value["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.250.0.0/28"
        );
        assert_eq!(net.config_list().name, "coxswain");
        let dns = net.cluster_dns().unwrap();
        assert_eq!(dns.nameservers[0].to_string(), "10.250.0.1");
        assert_eq!(dns.domain, "cluster.local");
        assert_eq!(net.host_ip().unwrap().to_string(), "192.168.0.10");
        assert!(net.attached().unwrap().is_empty());
    }

    #[test]
    fn a_pod_without_uid_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = CniNetworkConfig::for_pod_cidr(dir.path(), "10.250.0.0/28");
        let net = CniNetwork::with_exec(
            config,
            Arc::new(coxswain_cni::fake::ScriptedExec::default()),
        )
        .unwrap();
        let mut p = pod(serde_json::json!({"containers": []}));
        p.metadata.uid = None;
        let err = net.setup(&p, Path::new("/nope")).unwrap_err().to_string();
        assert!(err.contains("metadata.uid"), "{err}");
    }

    #[test]
    fn an_operators_conflist_dir_is_used_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("net.d");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(
            conf.join("05-ops.conflist"),
            r#"{"cniVersion": "1.0.0", "name": "ops-net", "plugins": [{"type": "macvlan"}]}"#,
        )
        .unwrap();
        let mut config = CniNetworkConfig::for_pod_cidr(dir.path(), "10.250.0.0/28");
        config.source = NetworkSource::ConfDir(conf.clone());
        let net = CniNetwork::with_exec(
            config.clone(),
            Arc::new(coxswain_cni::fake::ScriptedExec::default()),
        )
        .unwrap();
        assert_eq!(net.config_list().name, "ops-net");
        assert_eq!(net.gateway(), None);
        // No gateway to point pods at: cluster DNS only with an explicit nameserver.
        assert_eq!(net.cluster_dns(), None);
        assert!(!dir.path().join("cni/net.d").join(CONFLIST_NAME).exists());
        config.nameserver = Some("10.0.0.10".parse().unwrap());
        let net = CniNetwork::with_exec(
            config.clone(),
            Arc::new(coxswain_cni::fake::ScriptedExec::default()),
        )
        .unwrap();
        assert_eq!(
            net.cluster_dns().unwrap().nameservers[0].to_string(),
            "10.0.0.10"
        );
        config.source = NetworkSource::ConfDir(dir.path().join("empty"));
        let err = CniNetwork::with_exec(
            config,
            Arc::new(coxswain_cni::fake::ScriptedExec::default()),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("empty"), "{err}");
    }
}
