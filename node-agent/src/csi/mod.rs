//! CSI volumes on this node, as a kubelet drives them: the node's CSI drivers
//! ([`drivers`]: dialled at start, NodeGetInfo/NodeGetCapabilities, announced on
//! the Node), the mount lifecycle of pods' `persistentVolumeClaim` volumes backed
//! by a CSI PersistentVolume ([`volumes`]: NodeStage once per node, NodePublish
//! per pod, NodeUnpublish then NodeUnstage after the last user) with its
//! restart-safe [`journal`], and the node-deployment provisioner ([`provision`]:
//! CreateVolume/DeleteVolume for the control plane's WatchVolumes work).

pub mod drivers;
pub mod journal;
pub mod provision;
pub mod source;
pub mod volumes;

pub use drivers::{CsiDriverConfig, CsiDrivers, DriverInfo, NODE_ID_ANNOTATION};
pub use journal::MountJournal;
pub use source::CsiSource;
pub use volumes::CsiVolumes;

use std::time::Duration;

/// Longest wait for one CSI call before it counts as failed (and is retried).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors of the agent's CSI side; each names the driver, volume or path involved.
#[derive(Debug, thiserror::Error)]
pub enum CsiError {
    /// A `--csi-driver` value that is not `NAME=unix:///path`.
    #[error("--csi-driver {0:?}: expected NAME=unix:///path/to/csi.sock")]
    BadDriverFlag(String),
    /// The pod names a driver this node does not run (or has not reached yet).
    #[error("CSI driver {driver:?} is not registered on this node (agent has: {known})")]
    UnknownDriver {
        /// The driver name.
        driver: String,
        /// The drivers the agent knows, for the message.
        known: String,
    },
    /// Dialling the driver's socket failed.
    #[error("CSI driver {driver:?} at {endpoint}: {message} (is the driver running?)")]
    Connect {
        /// The driver name.
        driver: String,
        /// Its endpoint.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// A CSI call answered an error (or none in time).
    #[error("CSI driver {driver:?}: {call} of volume {volume_id:?}: {code:?}: {message}")]
    Call {
        /// The driver name.
        driver: String,
        /// The RPC, e.g. `NodeStageVolume`.
        call: &'static str,
        /// The volume the call was about (empty when none).
        volume_id: String,
        /// The gRPC code (`DeadlineExceeded` when the call timed out).
        code: tonic::Code,
        /// The driver's message.
        message: String,
    },
    /// The mount journal could not be read or written.
    #[error("CSI mount journal {path}: {message}")]
    Journal {
        /// The journal file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Runs one CSI call with [`CALL_TIMEOUT`], turning its status into [`CsiError::Call`].
pub(crate) async fn call<T>(
    driver: &str,
    name: &'static str,
    volume_id: &str,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CsiError> {
    let error = |code, message: String| CsiError::Call {
        driver: driver.to_string(),
        call: name,
        volume_id: volume_id.to_string(),
        code,
        message,
    };
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(error(status.code(), status.message().to_string())),
        Err(_) => Err(error(
            tonic::Code::DeadlineExceeded,
            format!("no answer within {CALL_TIMEOUT:?}"),
        )),
    }
}

#[cfg(test)]
mod provisioner_tests;
#[cfg(test)]
mod tests;
