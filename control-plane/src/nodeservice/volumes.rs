//! WatchVolumes, ReportProvisioning, ReportVolumeDeleted: the node's CSI drivers
//! provision and delete volumes for the claims and released volumes of the node.
//!
//! Not served yet: each answers Unimplemented.

use coxswain_proto::node::v1alpha1 as pb;
use tonic::Status;

use super::{EventStream, NodeService};

/// Serves WatchVolumes.
pub(crate) fn watch(
    _service: &NodeService,
    _request: pb::WatchVolumesRequest,
) -> Result<EventStream<pb::VolumeEvent>, Status> {
    Err(Status::unimplemented("WatchVolumes"))
}

/// Serves ReportProvisioning.
pub(crate) async fn report_provisioning(
    _service: &NodeService,
    _request: pb::ReportProvisioningRequest,
) -> Result<pb::ReportProvisioningResponse, Status> {
    Err(Status::unimplemented("ReportProvisioning"))
}

/// Serves ReportVolumeDeleted.
pub(crate) async fn report_deleted(
    _service: &NodeService,
    _request: pb::ReportVolumeDeletedRequest,
) -> Result<pb::ReportVolumeDeletedResponse, Status> {
    Err(Status::unimplemented("ReportVolumeDeleted"))
}
