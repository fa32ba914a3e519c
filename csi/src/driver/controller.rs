//! The CSI Controller service. The driver runs on the node that holds the
//! volumes, so "controller" operations are local: create, delete, expand,
//! list, validate and capacity. ControllerPublish is not needed (nothing to
//! attach) and is not advertised; snapshots are not supported.

use std::sync::Arc;

use coxswain_proto::csi::v1::controller_server::Controller;
use coxswain_proto::csi::v1::controller_service_capability::{self, rpc::Type as RpcType};
use coxswain_proto::csi::v1::list_volumes_response::Entry;
use coxswain_proto::csi::v1::validate_volume_capabilities_response::Confirmed;
use coxswain_proto::csi::v1::*;
use tonic::{Request, Response, Status};

use super::provision::{MIN_VOLUME_BYTES, parse_parameters};
use super::{Driver, capability};
use crate::Error;

/// The RPCs this controller advertises.
pub const CAPABILITIES: &[RpcType] = &[
    RpcType::CreateDeleteVolume,
    RpcType::GetCapacity,
    RpcType::ExpandVolume,
    RpcType::ListVolumes,
];

/// Controller service of the driver.
#[derive(Debug, Clone)]
pub struct ControllerService {
    driver: Arc<Driver>,
}

impl ControllerService {
    /// The Controller service over `driver`.
    pub fn new(driver: Arc<Driver>) -> Self {
        Self { driver }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn unsupported<T>(rpc: &str) -> Reply<T> {
    Err(Status::unimplemented(format!(
        "{rpc} is not supported by csi.coxswain.dev (node-local volumes)"
    )))
}

impl Driver {
    fn validate(
        &self,
        req: ValidateVolumeCapabilitiesRequest,
    ) -> Result<ValidateVolumeCapabilitiesResponse, Error> {
        if req.volume_id.is_empty() {
            return Err(Error::missing("volume_id"));
        }
        if req.volume_capabilities.is_empty() {
            return Err(Error::missing("volume_capabilities"));
        }
        if !self.lock().contains_key(&req.volume_id) {
            return Err(Error::VolumeNotFound(req.volume_id));
        }
        let checked = capability::check_all(&req.volume_capabilities, "volume_capabilities")
            .and_then(|()| parse_parameters(&req.parameters).map(drop));
        Ok(match checked {
            Ok(()) => ValidateVolumeCapabilitiesResponse {
                confirmed: Some(Confirmed {
                    volume_context: req.volume_context,
                    volume_capabilities: req.volume_capabilities,
                    parameters: req.parameters,
                    mutable_parameters: req.mutable_parameters,
                }),
                message: String::new(),
            },
            Err(e) => ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: e.to_string(),
            },
        })
    }

    pub(super) fn list(&self, req: ListVolumesRequest) -> Result<ListVolumesResponse, Error> {
        if req.max_entries < 0 {
            return Err(Error::InvalidArgument(
                "max_entries must not be negative".into(),
            ));
        }
        let start: usize = match req.starting_token.as_str() {
            "" => 0,
            token => token
                .parse()
                .map_err(|_| Error::Aborted(format!("starting_token {token:?} is not valid")))?,
        };
        let volumes = self.lock();
        if start > volumes.len() {
            return Err(Error::Aborted(format!(
                "starting_token {start} is past the end"
            )));
        }
        let take = if req.max_entries == 0 {
            usize::MAX
        } else {
            req.max_entries as usize
        };
        let entries: Vec<Entry> = volumes
            .values()
            .skip(start)
            .take(take)
            .map(|v| Entry {
                volume: Some(self.volume(v)),
                status: None,
            })
            .collect();
        let next = start + entries.len();
        Ok(ListVolumesResponse {
            entries,
            next_token: if next < volumes.len() {
                next.to_string()
            } else {
                String::new()
            },
        })
    }

    fn capacity(&self, req: GetCapacityRequest) -> Result<GetCapacityResponse, Error> {
        parse_parameters(&req.parameters)?;
        let local = req
            .accessible_topology
            .as_ref()
            .is_none_or(|t| self.is_local(&t.segments));
        let caps_ok = req
            .volume_capabilities
            .iter()
            .all(|c| capability::check(c, "volume_capabilities").is_ok());
        let available = if local && caps_ok {
            self.available_bytes(&self.lock())?
        } else {
            0
        };
        Ok(GetCapacityResponse {
            available_capacity: available as i64,
            maximum_volume_size: Some(available as i64),
            minimum_volume_size: Some(MIN_VOLUME_BYTES as i64),
        })
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Reply<CreateVolumeResponse> {
        let req = request.into_inner();
        let volume = self.driver.blocking(move |d| d.create_volume(req)).await?;
        Ok(Response::new(CreateVolumeResponse {
            volume: Some(volume),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Reply<DeleteVolumeResponse> {
        let id = request.into_inner().volume_id;
        self.driver.blocking(move |d| d.delete_volume(&id)).await?;
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        _: Request<ControllerPublishVolumeRequest>,
    ) -> Reply<ControllerPublishVolumeResponse> {
        unsupported("ControllerPublishVolume")
    }

    async fn controller_unpublish_volume(
        &self,
        _: Request<ControllerUnpublishVolumeRequest>,
    ) -> Reply<ControllerUnpublishVolumeResponse> {
        unsupported("ControllerUnpublishVolume")
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Reply<ValidateVolumeCapabilitiesResponse> {
        let req = request.into_inner();
        Ok(Response::new(
            self.driver.blocking(move |d| d.validate(req)).await?,
        ))
    }

    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Reply<ListVolumesResponse> {
        let req = request.into_inner();
        Ok(Response::new(
            self.driver.blocking(move |d| d.list(req)).await?,
        ))
    }

    async fn get_capacity(
        &self,
        request: Request<GetCapacityRequest>,
    ) -> Reply<GetCapacityResponse> {
        let req = request.into_inner();
        Ok(Response::new(
            self.driver.blocking(move |d| d.capacity(req)).await?,
        ))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Reply<ControllerGetCapabilitiesResponse> {
        let capabilities = CAPABILITIES
            .iter()
            .map(|t| ControllerServiceCapability {
                r#type: Some(controller_service_capability::Type::Rpc(
                    controller_service_capability::Rpc { r#type: *t as i32 },
                )),
            })
            .collect();
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn create_snapshot(
        &self,
        _: Request<CreateSnapshotRequest>,
    ) -> Reply<CreateSnapshotResponse> {
        unsupported("CreateSnapshot")
    }

    async fn delete_snapshot(
        &self,
        _: Request<DeleteSnapshotRequest>,
    ) -> Reply<DeleteSnapshotResponse> {
        unsupported("DeleteSnapshot")
    }

    async fn list_snapshots(
        &self,
        _: Request<ListSnapshotsRequest>,
    ) -> Reply<ListSnapshotsResponse> {
        unsupported("ListSnapshots")
    }

    async fn get_snapshot(&self, _: Request<GetSnapshotRequest>) -> Reply<GetSnapshotResponse> {
        unsupported("GetSnapshot")
    }

    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> Reply<ControllerExpandVolumeResponse> {
        let req = request.into_inner();
        if let Some(cap) = &req.volume_capability {
            capability::check(cap, "volume_capability")?;
        }
        let (size, node) = self
            .driver
            .blocking(move |d| d.controller_expand(&req.volume_id, req.capacity_range.as_ref()))
            .await?;
        Ok(Response::new(ControllerExpandVolumeResponse {
            capacity_bytes: size as i64,
            node_expansion_required: node,
        }))
    }

    async fn controller_get_volume(
        &self,
        _: Request<ControllerGetVolumeRequest>,
    ) -> Reply<ControllerGetVolumeResponse> {
        unsupported("ControllerGetVolume")
    }

    async fn controller_modify_volume(
        &self,
        _: Request<ControllerModifyVolumeRequest>,
    ) -> Reply<ControllerModifyVolumeResponse> {
        unsupported("ControllerModifyVolume")
    }
}
