//! Pod sandboxes: the namespaces every container of a pod joins and the pod cgroup
//! they all run under. [`SandboxManager`] is the real [`PodSandbox`]; it composes a
//! [`NamespaceOps`] and a [`CgroupDriver`], so the same code runs against fakes.
//!
//! Everything is idempotent and keyed by pod uid; leftovers are found by listing
//! what exists ([`PodSandbox::list`]), never from memory.

pub mod cgroup;
pub mod namespaces;
pub mod qos;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use cgroup::{CgroupDriver, CgroupError, CgroupVersion};
pub use namespaces::{FakeNamespaces, NamespaceOps, PodNamespaces, UnshareNamespaces};
pub use qos::{PodLimits, QosClass};

use crate::mounts::MountError;

/// Errors of the sandbox stage.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A helper process (`unshare`, `nsenter`) failed.
    #[error("namespace {path}: {message}")]
    Helper {
        /// The namespace file.
        path: PathBuf,
        /// What the helper said.
        message: String,
    },
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// A mount operation failed.
    #[error(transparent)]
    Mount(#[from] MountError),
}

impl SandboxError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What a sandbox is made from.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// The pod's uid.
    pub uid: String,
    /// The pod's hostname (`spec.hostname` or its name).
    pub hostname: String,
    /// The pod cgroup's limits.
    pub limits: PodLimits,
}

/// A ready sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    /// The namespaces to join.
    pub namespaces: PodNamespaces,
    /// The pod cgroup path (relative to the hierarchy root), e.g. `/coxswain/burstable/pod<uid>`.
    pub cgroup: String,
}

/// The sandbox stage of a pod, as the pod worker sees it.
pub trait PodSandbox: Send + Sync {
    /// Creates (or finds) the pod's namespaces and cgroup.
    fn ensure(&self, spec: &SandboxSpec) -> Result<SandboxInfo, SandboxError>;
    /// Removes them; removing a missing sandbox is fine.
    fn remove(&self, uid: &str) -> Result<(), SandboxError>;
    /// Uids of every pod that has any namespace or cgroup left.
    fn list(&self) -> Result<BTreeSet<String>, SandboxError>;
    /// The cgroup driver, for reading OOM counts and usage.
    fn cgroups(&self) -> &dyn CgroupDriver;
}

/// Namespaces under the agent root plus pod cgroups under a coxswain cgroup root.
pub struct SandboxManager {
    root: PathBuf,
    cgroup_root: String,
    namespaces: Box<dyn NamespaceOps>,
    cgroups: Box<dyn CgroupDriver>,
}

impl SandboxManager {
    /// A manager keeping namespaces under `root` and cgroups under `/<cgroup_root>`.
    pub fn new(
        root: impl Into<PathBuf>,
        cgroup_root: impl Into<String>,
        namespaces: Box<dyn NamespaceOps>,
        cgroups: Box<dyn CgroupDriver>,
    ) -> Self {
        Self {
            root: root.into(),
            cgroup_root: cgroup_root.into(),
            namespaces,
            cgroups,
        }
    }

    /// The real thing for this machine: `unshare` namespaces, detected cgroup version.
    pub fn system(config: &crate::AgentConfig) -> Self {
        Self::new(
            &config.root,
            &config.cgroup_root,
            Box::new(UnshareNamespaces::new(Box::new(
                crate::mounts::SystemMounter,
            ))),
            cgroup::detect(),
        )
    }
}

impl PodSandbox for SandboxManager {
    fn ensure(&self, spec: &SandboxSpec) -> Result<SandboxInfo, SandboxError> {
        let namespaces = PodNamespaces::at(&self.root, &spec.uid);
        self.namespaces.create(&namespaces, &spec.hostname)?;
        let cgroup = cgroup::pod_cgroup_path(&self.cgroup_root, spec.limits.qos, &spec.uid);
        self.cgroups.create_pod(&cgroup, &spec.limits)?;
        Ok(SandboxInfo { namespaces, cgroup })
    }

    fn remove(&self, uid: &str) -> Result<(), SandboxError> {
        for qos in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            self.cgroups
                .remove(&cgroup::pod_cgroup_path(&self.cgroup_root, qos, uid))?;
        }
        self.namespaces.remove(&PodNamespaces::at(&self.root, uid))
    }

    fn list(&self) -> Result<BTreeSet<String>, SandboxError> {
        let mut uids = self.namespaces.list(&self.root)?;
        uids.extend(
            cgroup::list_pod_cgroups(self.cgroups.as_ref(), &self.cgroup_root)?
                .into_iter()
                .map(|(u, _)| u),
        );
        Ok(uids)
    }

    fn cgroups(&self) -> &dyn CgroupDriver {
        self.cgroups.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_remove_list_round_trip_on_fakes() {
        let root = tempfile::tempdir().unwrap();
        let cg = tempfile::tempdir().unwrap();
        let mgr = SandboxManager::new(
            root.path(),
            "cx",
            Box::new(FakeNamespaces::default()),
            Box::new(cgroup::v2::CgroupV2::new(cg.path())),
        );
        let spec = SandboxSpec {
            uid: "u1".into(),
            hostname: "web".into(),
            limits: PodLimits {
                qos: QosClass::Guaranteed,
                cpu_shares: 1024,
                cpu_quota_us: Some(100_000),
                memory_bytes: Some(1 << 30),
                pids: 64,
            },
        };
        let info = mgr.ensure(&spec).unwrap();
        assert_eq!(info, mgr.ensure(&spec).unwrap());
        assert_eq!(info.cgroup, "/cx/podu1");
        assert_eq!(info.namespaces.net, root.path().join("netns/u1"));
        assert_eq!(mgr.list().unwrap().into_iter().collect::<Vec<_>>(), ["u1"]);
        mgr.remove("u1").unwrap();
        mgr.remove("u1").unwrap();
        assert!(mgr.list().unwrap().is_empty());
    }
}
