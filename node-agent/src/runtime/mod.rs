//! Containers: an OCI runtime spec built with `oci-spec` ([`spec`], privileges from
//! [`security`]), run by runc or
//! crun through their CLI ([`oci_cli`]) with each container under our shim
//! ([`crate::shim`]), or by the in-memory [`fake::FakeRuntime`] for hollow nodes.
//!
//! The pod worker only sees [`ContainerRuntime`]: create (detached, stopped before
//! its process runs), start, state (with the exit status once it ended), kill, delete.

pub mod fake;
pub mod oci_cli;
pub mod seccomp;
pub mod security;
pub mod spec;
pub mod spec_defaults;

use std::path::PathBuf;
use std::time::SystemTime;

pub use oci_cli::{OciRuntime, RuntimeKind};
pub use spec::{ContainerConfig, VolumeMount, build_spec};

/// Errors of the container runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The runtime binary or the shim failed to run or reported an error.
    #[error("{command}: {message}")]
    Command {
        /// The command line, for the operator.
        command: String,
        /// What it said.
        message: String,
    },
    /// The spec could not be built.
    #[error("oci spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    /// No OCI runtime was found.
    #[error("no OCI runtime found: install runc or crun (scripts/setup.sh)")]
    NoRuntime,
}

impl RuntimeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// A container's lifecycle state as the OCI runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created; its process waits for `start`.
    Created,
    /// Its process runs.
    Running,
    /// Paused (frozen).
    Paused,
    /// Its process has exited.
    Stopped,
}

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code; `128 + n` when killed by signal `n`.
    pub code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// When the shim saw it exit.
    pub finished_at: SystemTime,
}

/// What the runtime knows about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// Its lifecycle state.
    pub status: Status,
    /// Its init process on the host, while it has one.
    pub pid: Option<u32>,
    /// Its exit status, once stopped and recorded by the shim.
    pub exit: Option<ExitStatus>,
}

/// A container to create.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// The runtime-wide unique container id.
    pub id: String,
    /// The bundle directory (the runtime writes `config.json` into it).
    pub bundle: PathBuf,
    /// The OCI runtime spec.
    pub spec: oci_spec::runtime::Spec,
    /// The CRI-format log file for stdout and stderr.
    pub log_path: PathBuf,
}

/// The operations the pod worker needs from an OCI runtime.
pub trait ContainerRuntime: Send + Sync {
    /// Which runtime this is (`runc`, `crun`, `fake`).
    fn name(&self) -> &str;
    /// Whether the runtime can apply seccomp profiles (built with libseccomp).
    fn supports_seccomp(&self) -> bool {
        true
    }
    /// Creates the container; returns its init PID. It runs nothing until [`Self::start`].
    fn create(&self, request: &CreateRequest) -> Result<u32, RuntimeError>;
    /// Starts the user process of a created container.
    fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// The container's state; `None` when the runtime does not know it.
    fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError>;
    /// Sends `signal` to the container's init process.
    fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError>;
    /// Deletes the container (killing it if needed); deleting an unknown id is fine.
    fn delete(&self, id: &str) -> Result<(), RuntimeError>;
    /// Every container id the runtime knows under its state root.
    fn list(&self) -> Result<Vec<String>, RuntimeError>;
}
