//! The driver's error type and its mapping onto the gRPC codes the CSI spec
//! assigns to each failure.

use std::path::PathBuf;

use tonic::{Code, Status};

/// Errors of the CSI driver, client and conformance suite.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required request field is missing or malformed (`InvalidArgument`).
    #[error("{0}")]
    InvalidArgument(String),
    /// The volume ID names no volume this driver knows (`NotFound`).
    #[error("volume {0:?} not found")]
    VolumeNotFound(String),
    /// A path the request names is not a staging or target path of the volume (`NotFound`).
    #[error("volume {volume}: path {path} is neither staged nor published")]
    PathNotFound {
        /// The volume ID.
        volume: String,
        /// The path the caller gave.
        path: PathBuf,
    },
    /// A volume of the same name or a publish at the same path exists with
    /// different, incompatible settings (`AlreadyExists`).
    #[error("{0}")]
    AlreadyExists(String),
    /// The volume is not in a state that allows the call, e.g. publish before
    /// stage or delete while staged (`FailedPrecondition`).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The node has not enough capacity left, or the requested topology is
    /// not this node (`ResourceExhausted`).
    #[error("{0}")]
    ResourceExhausted(String),
    /// A pagination token that is not valid (`Aborted`).
    #[error("{0}")]
    Aborted(String),
    /// The capacity range cannot be satisfied by this driver (`OutOfRange`).
    #[error("{0}")]
    OutOfRange(String),
    /// A tool the driver execs failed or is missing.
    #[error("{tool} {args}: {message}")]
    Tool {
        /// The executable, e.g. `losetup`.
        tool: String,
        /// Its arguments, joined with spaces.
        args: String,
        /// Its standard error, or why it could not run.
        message: String,
    },
    /// A mount syscall failed.
    #[error("{op} {path}: {source}")]
    Mount {
        /// `mount`, `bind`, `remount` or `umount`.
        op: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The errno.
        source: nix::Error,
    },
    /// An I/O error on a path (state file, image file, directory).
    #[error("{path}: {source}")]
    Io {
        /// The path the error is about.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A state file that does not parse.
    #[error("state file {path}: {source} (move it away to let the driver forget the volume)")]
    State {
        /// The state file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// An endpoint that is not `unix:///path`.
    #[error("invalid CSI endpoint {0:?}: expected unix:///path/to/csi.sock")]
    Endpoint(String),
    /// Dialling the driver's socket failed.
    #[error("CSI socket {path}: {source} (is the driver running?)")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Transport error.
        source: Box<tonic::transport::Error>,
    },
    /// Serving gRPC on the socket failed.
    #[error("serving CSI on {path}: {source}")]
    Serve {
        /// The socket path.
        path: PathBuf,
        /// Transport error.
        source: Box<tonic::transport::Error>,
    },
    /// A blocking task panicked or was cancelled.
    #[error("driver task failed: {0}")]
    Task(String),
}

impl Error {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An `InvalidArgument` error naming a missing request field.
    pub fn missing(field: &str) -> Self {
        Self::InvalidArgument(format!("{field} is required"))
    }

    /// The gRPC code the CSI spec gives this failure.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) | Self::Endpoint(_) => Code::InvalidArgument,
            Self::VolumeNotFound(_) | Self::PathNotFound { .. } => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::OutOfRange(_) => Code::OutOfRange,
            Self::Aborted(_) => Code::Aborted,
            Self::Connect { .. } => Code::Unavailable,
            Self::Tool { .. }
            | Self::Mount { .. }
            | Self::Io { .. }
            | Self::State { .. }
            | Self::Serve { .. }
            | Self::Task(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        Status::new(err.code(), err.to_string())
    }
}
