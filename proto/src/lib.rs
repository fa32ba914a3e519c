//! gRPC protocol definitions for coxswain, generated with tonic.
//!
//! - [`deviceplugin::v1beta1`]: the Kubernetes device-plugin API, from
//!   `proto/k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.proto`, vendored
//!   verbatim so that a plugin built for Kubernetes can register with
//!   coxswain and coxswain's plugins can register with a kubelet.
//! - [`deviceplugin::v1alpha1`]: coxswain's extensions served on the same
//!   socket: per-device attributes v1beta1 cannot carry, and the control
//!   service for simulated GPUs.
//!
//! The node service and CSI v1 join this crate with their issues.

pub mod deviceplugin;
