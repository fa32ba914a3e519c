//! Shared harness of the node agent's integration tests: a real agent stack (runc or
//! crun, our shim, `unshare` namespaces, the machine's cgroups, overlayfs, a busybox
//! rootfs) under a private tempdir, cgroup root and runtime `--root`.
//!
//! These tests need root, runc, crun, util-linux and busybox-static; without them they
//! fail with a message saying so (they never pass silently).

#![allow(dead_code)]

pub mod agent_process;
pub mod control_plane;
pub mod node_state;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use coxswain_api::k8s::{Pod, PodStatus};
use coxswain_node_agent::AgentConfig;
use coxswain_node_agent::clock::ManualClock;
use coxswain_node_agent::images::{ImageConfig, LocalImageStore, busybox};
use coxswain_node_agent::mounts::SystemMounter;
use coxswain_node_agent::runtime::oci_cli::find_binary;
use coxswain_node_agent::runtime::{OciRuntime, RuntimeKind};
use coxswain_node_agent::sandbox::{SandboxManager, UnshareNamespaces, cgroup};
use coxswain_node_agent::volumes::{PodData, VolumeManager};
use coxswain_node_agent::worker::{PodWorker, WorkerDeps, remove_orphans};

/// Both runtimes, each test runs against each.
pub const RUNTIMES: [RuntimeKind; 2] = [RuntimeKind::Runc, RuntimeKind::Crun];

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails (never skips) when the machine cannot run the tests.
pub fn require_environment() {
    let mut missing = Vec::new();
    if !nix::unistd::Uid::effective().is_root() {
        missing.push("root".to_string());
    }
    for tool in ["runc", "crun", "unshare", "nsenter", "ip"] {
        if find_binary(tool).is_none() {
            missing.push(tool.to_string());
        }
    }
    if !Path::new(busybox::BUSYBOX).exists() {
        missing.push(busybox::BUSYBOX.to_string());
    }
    assert!(
        missing.is_empty(),
        "node-agent integration tests need {}: run scripts/setup.sh as root",
        missing.join(", ")
    );
}

/// One agent stack under a private root.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub kind: RuntimeKind,
    pub deps: WorkerDeps,
    pub clock: Arc<ManualClock>,
    pub cgroup_root: String,
}

impl Harness {
    /// A fresh stack for `kind` with a busybox image named `busybox`.
    pub fn new(kind: RuntimeKind) -> Self {
        require_environment();
        static HYBRID: std::sync::Once = std::sync::Once::new();
        HYBRID.call_once(|| {
            if cgroup::detect().version() == coxswain_node_agent::sandbox::CgroupVersion::V1 {
                cgroup::v1::release_unified_controllers(Path::new("/sys/fs/cgroup")).unwrap();
            }
        });
        let dir = tempfile::Builder::new()
            .prefix("cox-agent-it-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let cgroup_root = format!("coxswain-it-{}-{n}", std::process::id());
        let rootfs = busybox::build_rootfs(
            Path::new(busybox::BUSYBOX),
            &dir.path().join("busybox-rootfs"),
        )
        .unwrap();
        let clock = Arc::new(ManualClock::default());
        let deps = Self::deps(dir.path(), &cgroup_root, kind, clock.clone());
        let images = LocalImageStore::new(deps.config.images_dir(), Arc::new(SystemMounter));
        images
            .import_rootfs_dir("busybox", &rootfs, ImageConfig::default())
            .unwrap();
        Self {
            dir,
            kind,
            deps,
            clock,
            cgroup_root,
        }
    }

    /// A new agent instance over the same state (as after an agent restart).
    pub fn deps(
        root: &Path,
        cgroup_root: &str,
        kind: RuntimeKind,
        clock: Arc<ManualClock>,
    ) -> WorkerDeps {
        let mut config = AgentConfig::new(root.join("agent"));
        config.cgroup_root = cgroup_root.to_string();
        let config = Arc::new(config);
        let shim = PathBuf::from(env!("CARGO_BIN_EXE_coxswain-shim"));
        let runtime = OciRuntime::detect(Some(kind), config.runtime_state_dir(), shim).unwrap();
        let mounter = Arc::new(SystemMounter);
        let sandbox = SandboxManager::new(
            &config.root,
            cgroup_root,
            Box::new(UnshareNamespaces::new(Box::new(SystemMounter))),
            cgroup::detect(),
        );
        WorkerDeps {
            images: Arc::new(LocalImageStore::new(config.images_dir(), mounter.clone())),
            volumes: Arc::new(VolumeManager::new(
                config.allowed_host_paths.clone(),
                mounter,
            )),
            sandbox: Arc::new(sandbox),
            runtime: Arc::new(runtime),
            clock,
            config,
            network: Arc::new(coxswain_node_agent::network::NoNetwork),
            devices: Arc::new(coxswain_node_agent::devices::NoDevices),
        }
    }

    /// A second, independent agent instance over this harness's state.
    pub fn restart_agent(&self) -> WorkerDeps {
        Self::deps(
            self.dir.path(),
            &self.cgroup_root,
            self.kind,
            self.clock.clone(),
        )
    }

    /// A worker for `pod`.
    pub fn worker(&self, pod: Pod) -> PodWorker {
        PodWorker::new(self.deps.clone(), pod, PodData::default())
    }

    /// Pod cgroup path of `uid` for the given QoS directory (`None`: Guaranteed).
    pub fn pod_cgroup(&self, qos_dir: Option<&str>, uid: &str) -> String {
        match qos_dir {
            Some(q) => format!("/{}/{q}/pod{uid}", self.cgroup_root),
            None => format!("/{}/pod{uid}", self.cgroup_root),
        }
    }

    /// Whether anything of any pod is left: containers, runtime state, mounts,
    /// namespaces, cgroups, pod directories.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let ids = self.deps.runtime.list().unwrap();
        left.extend(ids.into_iter().map(|id| format!("runtime state {id}")));
        let root = &self.deps.config.root;
        for m in coxswain_node_agent::mounts::mounts_under(root) {
            left.push(format!("mount {}", m.display()));
        }
        let pods =
            cgroup::list_pod_cgroups(self.deps.sandbox.cgroups(), &self.cgroup_root).unwrap();
        left.extend(pods.into_iter().map(|(_, p)| format!("cgroup {p}")));
        left.extend(
            self.deps
                .sandbox
                .list()
                .unwrap()
                .into_iter()
                .map(|u| format!("sandbox {u}")),
        );
        for sub in ["netns", "ipcns", "utsns", "pods", "containers"] {
            if let Ok(entries) = std::fs::read_dir(root.join(sub)) {
                left.extend(
                    entries
                        .flatten()
                        .map(|e| format!("{sub}/{}", e.file_name().to_string_lossy())),
                );
            }
        }
        left
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = remove_orphans(&self.deps, &BTreeSet::new());
        let _ = self
            .deps
            .sandbox
            .cgroups()
            .remove(&format!("/{}", self.cgroup_root));
    }
}

/// A unique pod uid.
pub fn uid() -> String {
    format!(
        "{:08x}-it{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A pod from JSON with `uid` and `name` filled in.
pub fn pod(uid: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "it", "namespace": "default", "uid": uid},
        "spec": spec,
    }))
    .unwrap()
}

/// Steps `worker` until `done(status)` holds; panics with the last status after a
/// generous safety limit (a hang guard, not a timing assertion).
pub fn drive(worker: &mut PodWorker, done: impl Fn(&PodStatus) -> bool) -> PodStatus {
    let limit = Instant::now() + Duration::from_secs(90);
    loop {
        worker.step();
        let status = worker.status();
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < limit,
            "pod never reached the expected state; last status: {status:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Terminates (5 s grace on `clock`, which is then moved past it so that containers
/// ignoring SIGTERM get SIGKILL) and steps until everything of the pod is removed.
pub fn remove(worker: &mut PodWorker, clock: &ManualClock) {
    worker.terminate(Duration::from_secs(5));
    let limit = Instant::now() + Duration::from_secs(60);
    for step in 0.. {
        if worker.is_removed() {
            break;
        }
        if step == 10 {
            clock.advance(Duration::from_secs(6));
        }
        worker.step();
        assert!(
            Instant::now() < limit,
            "pod was never removed: {:#?}",
            worker.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The phase of `status`.
pub fn phase(status: &PodStatus) -> &str {
    status.phase.as_deref().unwrap_or("")
}

/// The app container statuses of `status`.
pub fn containers(status: &PodStatus) -> Vec<k8s_openapi::api::core::v1::ContainerStatus> {
    status.container_statuses.clone().unwrap_or_default()
}
