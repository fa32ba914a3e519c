//! Pod networking on the node: what puts a pod sandbox's network namespace on the
//! pod network, the DNS files its containers see, the node-local DNS server and the
//! host-gw routes to other nodes' pod CIDRs.
//!
//! - [`PodNetwork`]: the seam the pod worker calls (blocking) after the sandbox
//!   exists and before it is removed. [`CniNetwork`] drives the CNI plugins through
//!   `coxswain-cni`; [`NoNetwork`] keeps pods on loopback only (tests, hollow nodes);
//!   [`FakeNetwork`] hands out addresses in memory (unit tests).
//! - [`conf_dir`]: an operator's conflist directory, loaded again when it changes,
//!   and the network that could not be configured ([`conf_dir::Unconfigured`]).
//! - [`dns_files`]: a pod's `/etc/resolv.conf` and `/etc/hosts`.
//! - [`dns`]: the node-local DNS server answering cluster names through a [`dns::Resolver`].
//! - [`routes`]: host-gw routes, synced exactly, marked with their own route protocol.

pub mod cni;
pub mod conf_dir;
pub mod dns;
pub mod dns_files;
pub mod fake;
pub mod routes;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use coxswain_api::k8s::Pod;

pub use cni::{CniNetwork, CniNetworkConfig, NetworkSource};
pub use conf_dir::{ConfDirNetwork, Unconfigured};
pub use dns_files::ClusterDns;
pub use fake::FakeNetwork;

/// Errors of the network stage.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A CNI operation failed.
    #[error("pod {uid}: CNI {op}: {source}")]
    Cni {
        /// The pod uid.
        uid: String,
        /// ADD, DEL or the config load.
        op: &'static str,
        /// What the CNI library said.
        #[source]
        source: Box<coxswain_cni::Error>,
    },
    /// The CNI configuration or result cache is unusable.
    #[error("CNI network config: {0}")]
    CniConfig(#[source] Box<coxswain_cni::Error>),
    /// The network configuration is unusable.
    #[error("network config: {0}")]
    Config(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A helper command (`ip`, `nsenter`) failed.
    #[error("{command}: {message}")]
    Command {
        /// The command line.
        command: String,
        /// What went wrong.
        message: String,
    },
}

impl NetworkError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The addresses a pod got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIps {
    /// The pod's addresses, the primary first; empty for loopback-only pods.
    pub ips: Vec<IpAddr>,
    /// The node's address, when the network knows it.
    pub host_ip: Option<IpAddr>,
}

/// Putting pod sandboxes on the network. Called from the pod worker's blocking
/// steps (it execs plugins), never from a shared async worker thread.
pub trait PodNetwork: Send + Sync {
    /// Attaches the pod's network namespace at `netns`. Idempotent: an attachment
    /// that is recorded and still present is returned as it is.
    fn setup(&self, pod: &Pod, netns: &Path) -> Result<PodIps, NetworkError>;
    /// Detaches pod `uid` and frees its addresses. Idempotent, and works from what
    /// was persisted at setup (after an agent crash, or with the netns gone).
    fn teardown(&self, uid: &str, netns: &Path) -> Result<(), NetworkError>;
    /// Uids of pods with a persisted attachment (for cleaning up after crashes).
    fn attached(&self) -> Result<BTreeSet<String>, NetworkError> {
        Ok(BTreeSet::new())
    }
    /// The cluster DNS settings pods get; `None` writes no DNS files.
    fn cluster_dns(&self) -> Option<ClusterDns> {
        None
    }
    /// The node's address, reported as `status.hostIP`.
    fn host_ip(&self) -> Option<IpAddr> {
        None
    }
}

/// Pods keep only their loopback interface (the sandbox brings it up).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNetwork;

impl PodNetwork for NoNetwork {
    fn setup(&self, _pod: &Pod, _netns: &Path) -> Result<PodIps, NetworkError> {
        Ok(PodIps::default())
    }

    fn teardown(&self, _uid: &str, _netns: &Path) -> Result<(), NetworkError> {
        Ok(())
    }
}

/// Whether the pod asks for the host's network namespace.
pub fn uses_host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}
