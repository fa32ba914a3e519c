//! The names the control plane and the node agents share for CSI volumes, as Kubernetes
//! spells them: the Node annotation of a node's CSI drivers, the claim annotation naming
//! the node that provisions it, the StorageClass parameter of the filesystem type, and
//! the name of a provisioned volume.

/// On a Node: JSON object `{driverName: nodeID}` of the CSI drivers the node runs
/// (kubelet writes it when a driver registers; the agent at Register).
pub const CSI_NODE_ID_ANNOTATION: &str = "csi.volume.kubernetes.io/nodeid";

/// On a claim: the node whose driver provisions it (`WaitForFirstConsumer`).
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";

/// The StorageClass parameter giving the filesystem type (the external-provisioner's).
pub const FSTYPE_PARAMETER: &str = "csi.storage.k8s.io/fstype";

/// The name of the volume provisioned for the claim with `claim_uid`: `pvc-<uid>`.
pub fn provisioned_volume_name(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}
