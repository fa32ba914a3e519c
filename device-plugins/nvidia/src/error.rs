//! The plugin's error type: every variant names the socket, path or device
//! it is about.

use std::path::PathBuf;

/// Errors of the NVIDIA device plugin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NVML could not be loaded or initialised: no NVIDIA driver here.
    #[error(
        "NVML is not available ({0}): the NVIDIA driver is missing or not loaded; \
         run with --simulate dgx-h100 (or dgx-a100, pcie-8x-nvlink-pairs, dgx1-v100, pcie-4x) \
         to serve simulated GPUs"
    )]
    NvmlUnavailable(String),
    /// An NVML call failed.
    #[error("nvml: {what}: {message}")]
    Nvml {
        /// What was being asked of NVML (names the device where there is one).
        what: String,
        /// NVML's error text.
        message: String,
    },
    /// A `--simulate` value that names no known topology.
    #[error("unknown simulated topology {0:?}: expected one of {list}", list = crate::topology::Topology::NAMES.join(", "))]
    UnknownTopology(String),
    /// A resource name that is not `vendor.domain/type`.
    #[error("invalid resource name {0:?}: expected vendor.domain/type, e.g. nvidia.com/gpu")]
    InvalidResourceName(String),
    /// A device ID the plugin does not advertise.
    #[error("unknown device {0}")]
    UnknownDevice(String),
    /// A simulation-only operation asked of a real GPU.
    #[error("device {0} is not simulated: XID injection works on simulated GPUs only")]
    NotSimulated(String),
    /// Creating or checking a simulated device node failed.
    #[error("simulated device node {path}: {source}{hint}", hint = if source.kind() == std::io::ErrorKind::PermissionDenied { " (creating device nodes needs root)" } else { "" })]
    DeviceNode {
        /// The node's path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An I/O error on a path (socket directory, socket file, CDI spec).
    #[error("{path}: {source}")]
    Io {
        /// The path the error is about.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Dialling the registration socket failed.
    #[error("registration socket {path}: {source} (is the agent or kubelet running?)")]
    Connect {
        /// `kubelet.sock` path.
        path: PathBuf,
        /// Transport error.
        source: Box<tonic::transport::Error>,
    },
    /// The registration server answered `Register` with an error.
    #[error("registration at {path} refused: {status}")]
    RegistrationRefused {
        /// `kubelet.sock` path.
        path: PathBuf,
        /// The server's answer.
        status: Box<tonic::Status>,
    },
    /// The gRPC server on the plugin socket failed.
    #[error("serving device plugin socket {path}: {source}")]
    Serve {
        /// The plugin's socket path.
        path: PathBuf,
        /// Transport error.
        source: Box<tonic::transport::Error>,
    },
    /// Asking the PodResources socket which pods hold the GPUs failed.
    #[error("pod resources socket {path}: {message} (is the kubelet or agent serving it?)")]
    PodResources {
        /// The socket (`--pod-resources-socket`).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Binding or serving the `/metrics` listener failed.
    #[error("metrics listener {addr} (--metrics-listen): {source}")]
    Metrics {
        /// The address given to `--metrics-listen`.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the path it was about.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
