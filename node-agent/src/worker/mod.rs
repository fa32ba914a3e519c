//! The pod worker: one per pod, level-triggered. Each [`PodWorker::step`] compares
//! the desired pod with what the runtime reports and does the next idempotent thing;
//! the caller requeues it after the returned [`Action`]'s delay. The lifecycle is a
//! small private `enum State`:
//!
//! ```text
//! Preparing ──▶ Initializing ──▶ Running ──▶ Finished
//!     │              │              │           │
//!     └──────────────┴──────┬───────┴───────────┘
//!                   terminate() ──▶ Terminating ──▶ Removed
//! ```
//!
//! Preparing creates the sandbox and volumes and re-adopts containers a previous
//! agent left running (same ids, same PIDs); Initializing runs init containers in
//! order; Running applies the restart policy with exponential back-off
//! (`CrashLoopBackOff`); Terminating sends SIGTERM, waits the grace period, then
//! SIGKILL, and removes everything but nothing else.
//!
//! The steps block (they exec runc and mount): run workers on a dedicated thread or
//! through `spawn_blocking`, never on a shared async worker.

mod cleanup;
mod container_start;
mod environment;
#[cfg(test)]
mod network_tests;
mod observe;
mod pod_network;
pub mod record;
mod status;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coxswain_api::k8s::{Pod, PodStatus};

pub use cleanup::remove_orphans;
pub use record::{ContainerRecord, Current, Termination};

use crate::AgentConfig;
use crate::clock::Clock;
use crate::devices::DeviceStage;
use crate::images::ImageStore;
use crate::network::{PodIps, PodNetwork, dns_files::PodDnsFiles};
use crate::runtime::ContainerRuntime;
use crate::sandbox::{PodSandbox, SandboxInfo, SandboxSpec, qos};
use crate::volumes::{PodData, VolumeManager};

/// How often a worker with running containers looks again.
pub const POLL: Duration = Duration::from_millis(200);

/// How often a running pod's service-account tokens are looked at (a token is replaced
/// after 80% of its life: at least 8 of the 10 minutes the shortest one lives).
pub const TOKEN_CHECK: Duration = Duration::from_secs(30);

/// Everything a worker runs pods with; shared by all workers of an agent.
#[derive(Clone)]
pub struct WorkerDeps {
    /// The agent's configuration.
    pub config: Arc<AgentConfig>,
    /// The sandbox stage.
    pub sandbox: Arc<dyn PodSandbox>,
    /// The OCI runtime.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The image store.
    pub images: Arc<dyn ImageStore>,
    /// The volume stage.
    pub volumes: Arc<VolumeManager>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The pod network stage.
    pub network: Arc<dyn PodNetwork>,
    /// The device stage ([`crate::devices::DeviceManager`], or
    /// [`crate::devices::NoDevices`] on a node without device plugins).
    pub devices: Arc<dyn DeviceStage>,
}

/// What the caller should do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Step again after this delay (or earlier, when the pod changes).
    Requeue(Duration),
    /// Nothing left to do until the pod changes (finished, or removed).
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Preparing,
    Initializing,
    Running,
    Finished,
    Terminating {
        deadline: SystemTime,
        term_sent: bool,
        kill_sent: bool,
    },
    Removed,
}

/// Drives one pod.
pub struct PodWorker {
    deps: WorkerDeps,
    pod: Pod,
    data: PodData,
    uid: String,
    state: State,
    sandbox: Option<SandboxInfo>,
    volumes: BTreeMap<String, PathBuf>,
    init: Vec<ContainerRecord>,
    apps: Vec<ContainerRecord>,
    start_time: Option<SystemTime>,
    /// A pod-level problem (sandbox or volume), as (reason, message).
    problem: Option<(String, String)>,
    /// The pod's addresses, once its network is set up.
    ips: Option<PodIps>,
    /// The pod's resolv.conf and hosts files, when the network gives cluster DNS.
    dns_files: Option<PodDnsFiles>,
    /// No container starts or restarts any more: the API says the pod has ended.
    held: bool,
    /// When the pod's service-account tokens were last looked at.
    tokens_checked: Option<SystemTime>,
}

impl PodWorker {
    /// A worker for `pod` (which must have `metadata.uid` and a spec), with the
    /// secret/configMap contents its volumes reference.
    pub fn new(deps: WorkerDeps, pod: Pod, data: PodData) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let backoff = deps.config.backoff_initial;
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| ContainerRecord::new(c.clone(), true, &uid, backoff))
            .collect();
        let apps = spec
            .containers
            .iter()
            .map(|c| ContainerRecord::new(c.clone(), false, &uid, backoff))
            .collect();
        Self {
            deps,
            pod,
            data,
            uid,
            state: State::Preparing,
            sandbox: None,
            volumes: BTreeMap::new(),
            init,
            apps,
            start_time: None,
            problem: None,
            ips: None,
            dns_files: None,
            held: false,
            tokens_checked: None,
        }
    }

    /// Newer secret/configMap/claim data from a later pod event; used by the
    /// next prepare (a pod waiting for its claim to be bound picks it up).
    pub fn update_data(&mut self, data: PodData) {
        self.data = data;
    }

    /// The pod's uid.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The pod's records, init containers first.
    pub fn containers(&self) -> impl Iterator<Item = &ContainerRecord> {
        self.init.iter().chain(self.apps.iter())
    }

    /// Whether everything of the pod has been removed after [`Self::terminate`].
    pub fn is_removed(&self) -> bool {
        self.state == State::Removed
    }

    /// Never starts or restarts a container from now on (the pod's phase in the API
    /// is terminal, as a kubelet treats it); running ones are left to [`Self::terminate`].
    pub fn hold(&mut self) {
        self.held = true;
    }

    /// Whether one of the pod's containers is running.
    pub fn has_running_containers(&self) -> bool {
        self.containers().any(ContainerRecord::is_running)
    }

    /// Asks for the pod to be stopped (SIGTERM, then SIGKILL after `grace`) and removed.
    pub fn terminate(&mut self, grace: Duration) {
        if !matches!(self.state, State::Terminating { .. } | State::Removed) {
            let deadline = self.deps.clock.now() + grace;
            self.state = State::Terminating {
                deadline,
                term_sent: false,
                kill_sent: false,
            };
        }
    }

    /// [`Self::terminate`] with the pod's `terminationGracePeriodSeconds` (30 s by default).
    pub fn terminate_with_pod_grace(&mut self) {
        let seconds = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        self.terminate(Duration::from_secs(seconds.max(0) as u64));
    }

    /// Does the next thing.
    pub fn step(&mut self) -> Action {
        let (next, action) = match self.state {
            State::Preparing => self.prepare(),
            State::Initializing => self.step_init(),
            State::Running => self.step_running(),
            State::Finished => (State::Finished, Action::Wait),
            State::Terminating {
                deadline,
                term_sent,
                kill_sent,
            } => self.step_terminating(deadline, term_sent, kill_sent),
            State::Removed => (State::Removed, Action::Wait),
        };
        self.state = next;
        action
    }

    /// CPU and memory used by the pod (its pod cgroup), once it has a sandbox.
    pub fn usage(&self) -> Option<crate::sandbox::cgroup::Usage> {
        let sandbox = self.sandbox.as_ref()?;
        self.deps.sandbox.cgroups().usage(&sandbox.cgroup).ok()
    }

    /// The pod's status as Kubernetes reports it.
    pub fn status(&self) -> PodStatus {
        status::pod_status(self)
    }

    /// The pod's hostname: `spec.hostname`, else its name.
    pub(super) fn hostname(&self) -> String {
        let spec = self.pod.spec.as_ref();
        spec.and_then(|s| s.hostname.clone())
            .or_else(|| self.pod.metadata.name.clone())
            .unwrap_or_else(|| "pod".into())
    }

    fn pod_dir(&self) -> PathBuf {
        self.deps.config.pod_dir(&self.uid)
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.pod_dir().join("containers")
    }

    fn prepare(&mut self) -> (State, Action) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let sandbox = SandboxSpec {
            uid: self.uid.clone(),
            hostname: self.hostname(),
            limits: qos::pod_limits(&spec),
        };
        let prepared = self
            .deps
            .sandbox
            .ensure(&sandbox)
            .map_err(|e| ("SandboxCreateError".to_string(), e.to_string()))
            .and_then(|info| {
                let volumes = self
                    .deps
                    .volumes
                    .setup(&self.pod, &self.pod_dir(), &self.data)
                    .map_err(|e| ("VolumeSetupError".to_string(), e.to_string()))?;
                self.setup_network(&info)?;
                Ok((info, volumes))
            });
        match prepared {
            Ok((info, volumes)) => {
                self.sandbox = Some(info);
                self.volumes = volumes;
                self.problem = None;
                self.start_time.get_or_insert(self.deps.clock.now());
                self.adopt();
                (State::Initializing, Action::Requeue(Duration::ZERO))
            }
            Err(problem) => {
                self.problem = Some(problem);
                (
                    State::Preparing,
                    Action::Requeue(self.deps.config.backoff_initial),
                )
            }
        }
    }

    fn step_init(&mut self) -> (State, Action) {
        let never = self.restart_policy() == "Never";
        for i in 0..self.init.len() {
            self.observe(true, i);
            let rec = &self.init[i];
            match rec.terminated() {
                Some(t) if t.exit_code == 0 => continue,
                Some(_) if never => return (State::Finished, Action::Wait),
                _ => {}
            }
            if !rec.is_running() {
                self.maybe_start(true, i);
            }
            return (State::Initializing, Action::Requeue(POLL));
        }
        (State::Running, Action::Requeue(Duration::ZERO))
    }

    fn step_running(&mut self) -> (State, Action) {
        self.refresh_tokens();
        for i in 0..self.apps.len() {
            self.observe(false, i);
            if !self.apps[i].is_running() && self.should_start(&self.apps[i]) {
                self.maybe_start(false, i);
            }
        }
        if self
            .apps
            .iter()
            .all(|c| c.terminated().is_some() && !self.should_start(c))
        {
            return (State::Finished, Action::Wait);
        }
        (State::Running, Action::Requeue(POLL))
    }

    /// Every [`TOKEN_CHECK`], rewrites the pod's projected service-account tokens that are
    /// due for replacement (kubelet's volume manager remounts them as often). A failure
    /// keeps the old token, which is still valid for a fifth of its life, and is retried.
    fn refresh_tokens(&mut self) {
        let now = self.deps.clock.now();
        let due = self
            .tokens_checked
            .is_none_or(|at| now.duration_since(at).unwrap_or_default() >= TOKEN_CHECK);
        if !due {
            return;
        }
        self.tokens_checked = Some(now);
        let refreshed = self
            .deps
            .volumes
            .refresh_tokens(&self.pod, &self.pod_dir(), &self.data);
        if let Err(e) = refreshed {
            tracing::warn!(pod = %self.uid, "refreshing service-account tokens: {e}");
        }
    }

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    /// Whether a not-running app container is to be (re)started under the restart policy.
    fn should_start(&self, rec: &ContainerRecord) -> bool {
        if self.held {
            return false;
        }
        match rec.terminated() {
            None => true,
            Some(t) => match self.restart_policy().as_str() {
                "Never" => false,
                "OnFailure" => t.exit_code != 0,
                _ => true,
            },
        }
    }
}
