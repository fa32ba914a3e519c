//! gRPC protocol definitions for coxswain, generated with tonic.
//!
//! - [`deviceplugin::v1beta1`]: the Kubernetes device-plugin API, from
//!   `proto/k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.proto`, vendored
//!   verbatim so that a plugin built for Kubernetes can register with
//!   coxswain and coxswain's plugins can register with a kubelet.
//! - [`deviceplugin::v1alpha1`]: coxswain's extensions served on the same
//!   socket: per-device attributes v1beta1 cannot carry, and the control
//!   service for simulated GPUs.
//! - [`csi::v1`]: the Container Storage Interface, from `proto/csi/v1/csi.proto`
//!   (CSI spec v1.12.0), vendored verbatim so that `cox-csi` is a CSI driver
//!   any container orchestrator can use and the agent can drive any CSI driver.
//!
//! - [`node::v1alpha1`]: the node service between agents and the control plane
//!   (`proto/coxswain/node/v1alpha1/node.proto`), and the agent's own log service.

pub mod deviceplugin;

/// Container Storage Interface protocols.
pub mod csi {
    /// CSI spec v1.12.0 (package `csi.v1`).
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("csi.v1");

        /// The CSI spec release `csi.proto` was vendored from.
        pub const SPEC_VERSION: &str = "1.12.0";
    }
}

/// The coxswain node service.
pub mod node {
    /// Package `coxswain.node.v1alpha1`.
    #[allow(missing_docs, clippy::all)]
    pub mod v1alpha1 {
        tonic::include_proto!("coxswain.node.v1alpha1");
    }
}

/// The kubelet's PodResources API.
pub mod podresources {
    /// Package `v1` (`proto/k8s.io/kubelet/pkg/apis/podresources/v1/api.proto`), vendored verbatim.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("v1");
    }
}
