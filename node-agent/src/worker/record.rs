//! What the worker knows about one container of its pod, and the small checkpoint
//! (`<pod dir>/containers/<name>.json`) that lets a new agent re-adopt it: restart
//! count, start time, and the last termination.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coxswain_api::k8s::Container;

/// How a container instance ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Termination {
    /// Exit code (`128 + signal` when killed).
    pub exit_code: i32,
    /// Killing signal, if any.
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`, `ContainerStatusUnknown`.
    pub reason: String,
    /// Details for the operator.
    pub message: Option<String>,
    /// When it started (nanoseconds since the epoch), if it did.
    pub started_ns: Option<u64>,
    /// When it ended (nanoseconds since the epoch).
    pub finished_ns: u64,
}

/// The container's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    /// Not running; `reason` as Kubernetes reports it (`ContainerCreating`, `CrashLoopBackOff`, ...).
    Waiting {
        /// Reason.
        reason: String,
        /// Message.
        message: Option<String>,
    },
    /// Running with host PID `pid` since `started`.
    Running {
        /// Host PID of the container's init, when known.
        pid: Option<u32>,
        /// Start time.
        started: SystemTime,
    },
    /// Ended.
    Terminated(Termination),
}

/// One container of the pod (init or app).
#[derive(Debug, Clone)]
pub struct ContainerRecord {
    /// The container's spec.
    pub spec: Container,
    /// Whether it is an init container.
    pub init: bool,
    /// The runtime id (`<pod uid>_<name>`).
    pub id: String,
    /// Times restarted.
    pub restart_count: u32,
    /// Current state.
    pub current: Current,
    /// The previous instance's termination.
    pub last: Option<Termination>,
    /// Earliest time of the next start (restart back-off).
    pub next_start: Option<SystemTime>,
    /// The next back-off delay.
    pub backoff: Duration,
    /// Since when the runtime says "stopped" without an exit file yet.
    pub stopped_since: Option<std::time::Instant>,
}

impl ContainerRecord {
    /// A container that has not been created yet.
    pub fn new(spec: Container, init: bool, pod_uid: &str, backoff: Duration) -> Self {
        let id = format!("{pod_uid}_{}", spec.name);
        Self {
            spec,
            init,
            id,
            restart_count: 0,
            current: Current::Waiting {
                reason: if init {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                }
                .to_string(),
                message: None,
            },
            last: None,
            next_start: None,
            backoff,
            stopped_since: None,
        }
    }

    /// Whether the container's process runs (or may still run).
    pub fn is_running(&self) -> bool {
        matches!(self.current, Current::Running { .. })
    }

    /// Its termination, if it ended.
    pub fn terminated(&self) -> Option<&Termination> {
        match &self.current {
            Current::Terminated(t) => Some(t),
            _ => None,
        }
    }
}

/// Nanoseconds since the epoch.
pub fn to_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

/// A time from nanoseconds since the epoch.
pub fn from_ns(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// What survives the agent for one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Restart count.
    pub restart_count: u32,
    /// Start time of the current instance.
    pub started_ns: Option<u64>,
    /// The current instance's termination, once recorded.
    pub terminated: Option<Termination>,
    /// The previous instance's termination.
    pub last: Option<Termination>,
}

impl Checkpoint {
    /// The checkpoint of `record`.
    pub fn of(record: &ContainerRecord) -> Self {
        Self {
            restart_count: record.restart_count,
            started_ns: match &record.current {
                Current::Running { started, .. } => Some(to_ns(*started)),
                _ => None,
            },
            terminated: record.terminated().cloned(),
            last: record.last.clone(),
        }
    }

    /// Writes it to `<dir>/<name>.json`.
    pub fn save(&self, dir: &Path, name: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{name}.json.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, dir.join(format!("{name}.json")))
    }

    /// Reads `<dir>/<name>.json`, if present and readable.
    pub fn load(dir: &Path, name: &str) -> Option<Self> {
        let body = std::fs::read(dir.join(format!("{name}.json"))).ok()?;
        serde_json::from_slice(&body).ok()
    }
}
