//! The pod worker's network steps: attaching the sandbox's network namespace
//! ([`crate::network::PodNetwork::setup`]) once the sandbox exists, writing the
//! pod's DNS files, the bind mounts that put them at `/etc/resolv.conf` and
//! `/etc/hosts` in every container, and detaching before the sandbox goes.

use crate::network::dns_files::{self, HostFiles};
use crate::network::{PodIps, uses_host_network};
use crate::runtime::VolumeMount;
use crate::sandbox::{PodNamespaces, SandboxInfo};

use super::{PodWorker, WorkerDeps};

impl PodWorker {
    /// Sets up the pod's network (not for hostNetwork pods, which get the node's
    /// address) and writes its DNS files.
    pub(super) fn setup_network(&mut self, info: &SandboxInfo) -> Result<(), (String, String)> {
        let network = self.deps.network.clone();
        let ips = if uses_host_network(&self.pod) {
            PodIps {
                ips: network.host_ip().into_iter().collect(),
                host_ip: network.host_ip(),
            }
        } else {
            network
                .setup(&self.pod, &info.namespaces.net)
                .map_err(|e| ("NetworkSetupError".to_string(), e.to_string()))?
        };
        if let Some(dns) = network.cluster_dns() {
            let files = dns_files::write(
                &self.pod_dir(),
                &self.pod,
                &ips.ips,
                &dns,
                &HostFiles::default(),
            )
            .map_err(|e| ("NetworkSetupError".to_string(), e.to_string()))?;
            self.dns_files = Some(files);
        }
        self.ips = Some(ips);
        Ok(())
    }

    /// Detaches the pod from the network (idempotent).
    pub(super) fn teardown_network(&mut self) -> Result<(), String> {
        teardown(&self.deps, &self.uid)?;
        self.ips = None;
        Ok(())
    }

    /// The DNS file mounts for a container, except where it mounts a volume itself.
    pub(super) fn dns_mounts(&self, volume_mounts: &[VolumeMount]) -> Vec<VolumeMount> {
        let Some(files) = &self.dns_files else {
            return Vec::new();
        };
        files
            .mounts()
            .into_iter()
            .filter(|(_, dest)| !volume_mounts.iter().any(|m| m.destination == *dest))
            .map(|(source, dest)| VolumeMount {
                source: source.to_path_buf(),
                destination: dest.to_string(),
                read_only: false,
            })
            .collect()
    }

    /// The pod's addresses, once set up.
    pub(super) fn pod_ips(&self) -> Option<&PodIps> {
        self.ips.as_ref()
    }
}

/// Detaches pod `uid`, found by its namespace path under the agent root.
pub(super) fn teardown(deps: &WorkerDeps, uid: &str) -> Result<(), String> {
    let netns = PodNamespaces::at(&deps.config.root, uid).net;
    deps.network
        .teardown(uid, &netns)
        .map_err(|e| e.to_string())
}
