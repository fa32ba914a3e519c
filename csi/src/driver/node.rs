//! The CSI Node service: stage once per node, publish per pod, stats,
//! online expansion, and this node's ID and topology.

use std::sync::Arc;

use coxswain_proto::csi::v1::node_server::Node;
use coxswain_proto::csi::v1::node_service_capability::{self, rpc::Type as RpcType};
use coxswain_proto::csi::v1::volume_usage::Unit;
use coxswain_proto::csi::v1::*;
use tonic::{Request, Response, Status};

use super::{Driver, capability};
use crate::Error;

/// The RPCs this node service advertises.
pub const CAPABILITIES: &[RpcType] = &[
    RpcType::StageUnstageVolume,
    RpcType::GetVolumeStats,
    RpcType::ExpandVolume,
];

/// Node service of the driver.
#[derive(Debug, Clone)]
pub struct NodeService {
    driver: Arc<Driver>,
}

impl NodeService {
    /// The Node service over `driver`.
    pub fn new(driver: Arc<Driver>) -> Self {
        Self { driver }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// Checks the required capability; returns whether it asks for read-only.
fn required_capability(cap: Option<&VolumeCapability>) -> Result<bool, Error> {
    let cap = cap.ok_or_else(|| Error::missing("volume_capability"))?;
    capability::check(cap, "volume_capability")
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Reply<NodeStageVolumeResponse> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(Error::missing("volume_id").into());
        }
        if req.staging_target_path.is_empty() {
            return Err(Error::missing("staging_target_path").into());
        }
        required_capability(req.volume_capability.as_ref())?;
        self.driver
            .blocking(move |d| d.stage(&req.volume_id, &req.staging_target_path))
            .await?;
        Ok(Response::new(NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Reply<NodeUnstageVolumeResponse> {
        let req = request.into_inner();
        self.driver
            .blocking(move |d| d.unstage(&req.volume_id, &req.staging_target_path))
            .await?;
        Ok(Response::new(NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Reply<NodePublishVolumeResponse> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(Error::missing("volume_id").into());
        }
        if req.target_path.is_empty() {
            return Err(Error::missing("target_path").into());
        }
        let readonly = required_capability(req.volume_capability.as_ref())? || req.readonly;
        self.driver
            .blocking(move |d| {
                if super::ephemeral::is_ephemeral(&req.volume_context) {
                    let capability = req.volume_capability.clone().unwrap_or_default();
                    return d.publish_ephemeral(
                        &req.volume_id,
                        &req.target_path,
                        capability,
                        &req.volume_context,
                        readonly,
                    );
                }
                d.publish(
                    &req.volume_id,
                    &req.staging_target_path,
                    &req.target_path,
                    readonly,
                )
            })
            .await?;
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Reply<NodeUnpublishVolumeResponse> {
        let req = request.into_inner();
        self.driver
            .blocking(move |d| {
                d.unpublish_ephemeral(&req.volume_id, &req.target_path)
                    .unwrap_or_else(|| d.unpublish(&req.volume_id, &req.target_path))
            })
            .await?;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Reply<NodeGetVolumeStatsResponse> {
        let req = request.into_inner();
        let usage = self
            .driver
            .blocking(move |d| d.stats(&req.volume_id, &req.volume_path))
            .await?;
        let entry = |unit: Unit, total: u64, available: u64, used: u64| VolumeUsage {
            total: total as i64,
            available: available as i64,
            used: used as i64,
            unit: unit as i32,
        };
        Ok(Response::new(NodeGetVolumeStatsResponse {
            usage: vec![
                entry(
                    Unit::Bytes,
                    usage.total_bytes,
                    usage.available_bytes,
                    usage.used_bytes,
                ),
                entry(
                    Unit::Inodes,
                    usage.total_inodes,
                    usage.free_inodes,
                    usage.used_inodes,
                ),
            ],
            volume_condition: None,
        }))
    }

    async fn node_expand_volume(
        &self,
        request: Request<NodeExpandVolumeRequest>,
    ) -> Reply<NodeExpandVolumeResponse> {
        let req = request.into_inner();
        if let Some(cap) = &req.volume_capability {
            capability::check(cap, "volume_capability")?;
        }
        let required = req
            .capacity_range
            .as_ref()
            .map_or(0, |r| r.required_bytes.max(0) as u64);
        let size = self
            .driver
            .blocking(move |d| d.node_expand(&req.volume_id, &req.volume_path, required))
            .await?;
        Ok(Response::new(NodeExpandVolumeResponse {
            capacity_bytes: size as i64,
        }))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Reply<NodeGetCapabilitiesResponse> {
        let capabilities = CAPABILITIES
            .iter()
            .map(|t| NodeServiceCapability {
                r#type: Some(node_service_capability::Type::Rpc(
                    node_service_capability::Rpc { r#type: *t as i32 },
                )),
            })
            .collect();
        Ok(Response::new(NodeGetCapabilitiesResponse { capabilities }))
    }

    async fn node_get_info(&self, _: Request<NodeGetInfoRequest>) -> Reply<NodeGetInfoResponse> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.driver.config.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: Some(self.driver.topology()),
        }))
    }
}
