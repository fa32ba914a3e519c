//! [`ConfDirNetwork`]: the pod network from an operator's conflist directory, loaded
//! when a pod needs it and loaded again whenever the directory changes, so a
//! conflist that is broken, missing or names a plugin that is not installed yet
//! fails only the pods that need it, with the file and field in their status, and
//! fixing it needs no agent restart (a CNI DaemonSet may install it after the agent
//! started, as with kubelet).
//!
//! [`Unconfigured`] is the same idea for a network that could not be configured at
//! all: every setup fails with the reason, while teardown of a pod that never got an
//! attachment (nothing in the result cache) succeeds, so such pods can still be
//! deleted.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use coxswain_api::k8s::Pod;
use coxswain_cni::ResultCache;

use super::cni::{CniNetwork, CniNetworkConfig, NetworkSource};
use super::dns_files::ClusterDns;
use super::{NetworkError, PodIps, PodNetwork};

/// Name, modification time and size of each entry of a directory: a change of any
/// means the conflist is loaded again.
type Fingerprint = Vec<(String, Option<SystemTime>, u64)>;

fn fingerprint(dir: &Path) -> Fingerprint {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Fingerprint = entries
        .flatten()
        .map(|e| {
            let meta = e.metadata().ok();
            (
                e.file_name().to_string_lossy().into_owned(),
                meta.as_ref().and_then(|m| m.modified().ok()),
                meta.map_or(0, |m| m.len()),
            )
        })
        .collect();
    out.sort();
    out
}

/// The pod network of an operator's conflist directory ([`NetworkSource::ConfDir`]).
pub struct ConfDirNetwork {
    config: CniNetworkConfig,
    dir: PathBuf,
    loaded: Mutex<Option<(Fingerprint, Arc<CniNetwork>)>>,
}

impl ConfDirNetwork {
    /// A network over `config`, whose source must be [`NetworkSource::ConfDir`].
    /// Nothing is loaded until a pod needs it.
    pub fn new(config: CniNetworkConfig) -> Result<Self, NetworkError> {
        let NetworkSource::ConfDir(dir) = &config.source else {
            return Err(NetworkError::Config(
                "ConfDirNetwork needs an operator's conflist directory".into(),
            ));
        };
        Ok(Self {
            dir: dir.clone(),
            config,
            loaded: Mutex::new(None),
        })
    }

    /// The network of the directory as it is now (loaded again if it changed).
    pub fn current(&self) -> Result<Arc<CniNetwork>, NetworkError> {
        let now = fingerprint(&self.dir);
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, network)) = loaded.as_ref()
            && *seen == now
        {
            return Ok(network.clone());
        }
        let network = Arc::new(CniNetwork::new(self.config.clone())?);
        tracing::info!(dir = %self.dir.display(), network = %network.config_list().name, "loaded the pod network's conflist");
        *loaded = Some((now, network.clone()));
        Ok(network)
    }
}

impl PodNetwork for ConfDirNetwork {
    fn setup(&self, pod: &Pod, netns: &Path) -> Result<PodIps, NetworkError> {
        self.current()?.setup(pod, netns)
    }

    fn teardown(&self, uid: &str, netns: &Path) -> Result<(), NetworkError> {
        match self.current() {
            Ok(network) => network.teardown(uid, netns),
            Err(e) => teardown_without_config(&self.config.results_dir(), uid, e),
        }
    }

    fn attached(&self) -> Result<BTreeSet<String>, NetworkError> {
        cached_uids(&self.config.results_dir())
    }

    fn cluster_dns(&self) -> Option<ClusterDns> {
        self.current().ok()?.cluster_dns()
    }

    fn host_ip(&self) -> Option<IpAddr> {
        self.config.node_ip
    }
}

/// A pod network that could not be configured: setups fail with `reason`; pods
/// without a cached attachment tear down at once.
pub struct Unconfigured {
    /// Why the network is not there (the pods' status message).
    pub reason: String,
    /// The CNI result cache of the network that was to be configured.
    pub results_dir: PathBuf,
}

impl PodNetwork for Unconfigured {
    fn setup(&self, _pod: &Pod, _netns: &Path) -> Result<PodIps, NetworkError> {
        Err(NetworkError::Config(self.reason.clone()))
    }

    fn teardown(&self, uid: &str, _netns: &Path) -> Result<(), NetworkError> {
        let error = NetworkError::Config(self.reason.clone());
        teardown_without_config(&self.results_dir, uid, error)
    }

    fn attached(&self) -> Result<BTreeSet<String>, NetworkError> {
        cached_uids(&self.results_dir)
    }
}

/// Pod uids with any entry in the CNI result cache at `results_dir`.
pub fn cached_uids(results_dir: &Path) -> Result<BTreeSet<String>, NetworkError> {
    let entries = ResultCache::new(results_dir)
        .list()
        .map_err(|e| NetworkError::CniConfig(Box::new(e)))?;
    Ok(entries.into_iter().map(|e| e.container_id).collect())
}

/// Teardown when no network config can be loaded: done if `uid` has nothing in the
/// result cache (it never got an attachment), else `error` (a DEL needs the config;
/// the worker retries).
fn teardown_without_config(
    results_dir: &Path,
    uid: &str,
    error: NetworkError,
) -> Result<(), NetworkError> {
    if cached_uids(results_dir)?.contains(uid) {
        return Err(error);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": uid},
            "spec": {"containers": []},
        }))
        .unwrap()
    }

    #[test]
    fn a_broken_conflist_fails_setup_naming_it_and_a_fixed_one_is_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("net.d");
        std::fs::create_dir_all(&conf).unwrap();
        let file = conf.join("10-ops.conflist");
        std::fs::write(
            &file,
            r#"{"cniVersion": "1.0.0", "name": "ops", "plugins": [{}]}"#,
        )
        .unwrap();
        let mut config = CniNetworkConfig::for_pod_cidr(dir.path(), "10.250.0.0/28");
        config.source = NetworkSource::ConfDir(conf.clone());
        let network = ConfDirNetwork::new(config).unwrap();
        let err = network
            .setup(&pod("u1"), Path::new("/nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("10-ops.conflist"), "{err}");
        assert!(err.contains("plugins[0].type"), "{err}");
        // Nothing was attached, so the pod can go.
        network.teardown("u1", Path::new("/nope")).unwrap();
        std::fs::write(
            &file,
            r#"{"cniVersion": "1.0.0", "name": "ops-fixed", "plugins": [{"type": "macvlan"}]}"#,
        )
        .unwrap();
        assert_eq!(network.current().unwrap().config_list().name, "ops-fixed");
    }

    #[test]
    fn unconfigured_fails_setup_with_the_reason_but_lets_unattached_pods_go() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results");
        let network = Unconfigured {
            reason: "bridge cox0: permission denied".into(),
            results_dir: results.clone(),
        };
        let err = network
            .setup(&pod("u1"), Path::new("/nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bridge cox0: permission denied"), "{err}");
        network.teardown("u1", Path::new("/nope")).unwrap();
        let cache = ResultCache::new(&results);
        cache
            .store(&coxswain_cni::CachedAttachment {
                kind: coxswain_cni::cache::CACHE_KIND.into(),
                network_name: "coxswain".into(),
                container_id: "u2".into(),
                ifname: "eth0".into(),
                netns: "/nope".into(),
                cni_version: "1.0.0".into(),
                runtime_config: serde_json::json!({}),
                result: serde_json::json!({"cniVersion": "1.0.0"}),
            })
            .unwrap();
        assert!(network.teardown("u2", Path::new("/nope")).is_err());
        assert_eq!(network.attached().unwrap(), BTreeSet::from(["u2".into()]));
    }
}
