//! Errors of the device manager.

use std::path::PathBuf;

/// What went wrong finding, allocating or applying devices.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A plugin socket could not be dialled.
    #[error("device plugin socket {path}: {source} (is the plugin running?)")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The transport error.
        source: Box<tonic::transport::Error>,
    },
    /// A call to a plugin failed.
    #[error("device plugin for {resource}: {call}: {status}", status = .status.message())]
    Rpc {
        /// The plugin's resource.
        resource: String,
        /// The RPC.
        call: &'static str,
        /// What the plugin answered.
        status: Box<tonic::Status>,
    },
    /// The agent runs without a device manager but a container asks for devices.
    #[error(
        "container {container:?} requests {resource} but this agent has no device manager \
         (start the agent with device plugins enabled)"
    )]
    NoDeviceManager {
        /// The container.
        container: String,
        /// The extended resource it requests.
        resource: String,
    },
    /// No plugin is registered (or connected) for a resource.
    #[error("no device plugin is registered for {resource} (is the plugin running?)")]
    NoPlugin {
        /// The resource.
        resource: String,
    },
    /// The pod's `coxswain.dev/gpu-devices` annotation is malformed or does not fit
    /// the containers' requests.
    #[error("annotation coxswain.dev/gpu-devices: {0}")]
    Annotation(String),
    /// A device cannot be allocated: unknown, or unhealthy.
    #[error("device {id} of {resource}: {reason}")]
    DeviceUnavailable {
        /// The device ID.
        id: String,
        /// The resource.
        resource: String,
        /// Why.
        reason: String,
    },
    /// A device (or more of its share than is left) is held by another pod.
    #[error("device {id} is already allocated to pod {pod}")]
    AlreadyAllocated {
        /// The device ID.
        id: String,
        /// The pod uid holding it.
        pod: String,
    },
    /// Not enough free healthy devices for a pod without an annotation.
    #[error("{resource}: {wanted} device(s) requested, {free} free and healthy")]
    NotEnoughDevices {
        /// The resource.
        resource: String,
        /// How many were asked for.
        wanted: usize,
        /// How many are free.
        free: usize,
    },
    /// A CDI device name could not be resolved.
    #[error("CDI device {name}: {message}")]
    Cdi {
        /// The fully qualified CDI name (`vendor/class=device`).
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A device node the plugin named cannot be used.
    #[error("device node {path}: {message}")]
    DeviceNode {
        /// The host path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The checkpoint file is unreadable.
    #[error("device checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The OCI spec could not be edited.
    #[error("OCI spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    /// The manager's runtime has shut down.
    #[error("the device manager has stopped")]
    Stopped,
}

impl Error {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// The Kubernetes reason a container that could not get its devices waits with.
    pub fn reason(&self) -> &'static str {
        "UnexpectedAdmissionError"
    }
}
