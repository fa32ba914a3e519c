//! gRPC protocol definitions for coxswain.
//!
//! Filled by the node-agent, device-plugin and CSI issues: the node service
//! (`node.proto`), the Kubernetes device-plugin API `v1beta1` (vendored
//! verbatim) and CSI v1 (`csi.proto`, vendored verbatim). Nothing is defined
//! here yet.
