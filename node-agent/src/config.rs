//! The agent's configuration: where it keeps state, which OCI runtime it runs,
//! what pods may mount from the host, and the restart back-off.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// What an agent instance needs to run pods.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The agent's state root: `netns/`, `pods/`, `containers/`, `images/`, `runtime/`.
    pub root: PathBuf,
    /// Name of the cgroup under which all pod cgroups live (`coxswain`).
    pub cgroup_root: String,
    /// Host paths (prefixes) that `hostPath` volumes may use; empty allows none.
    pub allowed_host_paths: Vec<PathBuf>,
    /// First restart back-off delay (Kubernetes: 10 s).
    pub backoff_initial: Duration,
    /// Largest restart back-off delay (Kubernetes: 300 s).
    pub backoff_max: Duration,
    /// Whether containers get the default seccomp profile.
    pub seccomp: bool,
    /// Registries (`host:port`) images are pulled from over plain HTTP instead of HTTPS.
    pub insecure_registries: Vec<String>,
    /// The API server's TLS address as containers reach it (`KUBERNETES_SERVICE_HOST` and
    /// `_PORT`, which in-cluster clients read with the mounted token); set by the agent
    /// when it talks to the control plane over `https://`.
    pub kubernetes_service: Option<(String, u16)>,
}

impl AgentConfig {
    /// A configuration rooted at `root` with Kubernetes' defaults.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            cgroup_root: "coxswain".to_string(),
            allowed_host_paths: Vec::new(),
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            seccomp: true,
            insecure_registries: Vec::new(),
            kubernetes_service: None,
        }
    }

    /// Directory holding one bind-mounted namespace set per pod.
    pub fn netns_dir(&self) -> PathBuf {
        self.root.join("netns")
    }

    /// Directory of one pod's files (volumes, logs, container checkpoints).
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.root.join("pods").join(pod_uid)
    }

    /// Directory of one container's bundle, rootfs layers and exit file.
    pub fn container_dir(&self, container_id: &str) -> PathBuf {
        self.root.join("containers").join(container_id)
    }

    /// The OCI runtime's `--root` state directory.
    pub fn runtime_state_dir(&self) -> PathBuf {
        self.root.join("runtime")
    }

    /// Where imported images and layers are kept.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// Whether `path` lies under one of the allowed host path prefixes.
    pub fn host_path_allowed(&self, path: &Path) -> bool {
        self.allowed_host_paths.iter().any(|p| path.starts_with(p))
    }
}
