//! The CSI Identity service: name, version, plugin capabilities and Probe.

use std::sync::Arc;

use coxswain_proto::csi::v1::identity_server::Identity;
use coxswain_proto::csi::v1::plugin_capability::service::Type as ServiceType;
use coxswain_proto::csi::v1::plugin_capability::volume_expansion::Type as ExpansionType;
use coxswain_proto::csi::v1::plugin_capability::{self, Service, VolumeExpansion};
use coxswain_proto::csi::v1::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse,
};
use tonic::{Request, Response, Status};

use super::Driver;

/// Identity service of the driver.
#[derive(Debug, Clone)]
pub struct IdentityService {
    driver: Arc<Driver>,
}

impl IdentityService {
    /// The Identity service over `driver`.
    pub fn new(driver: Arc<Driver>) -> Self {
        Self { driver }
    }
}

fn service(kind: ServiceType) -> PluginCapability {
    PluginCapability {
        r#type: Some(plugin_capability::Type::Service(Service {
            r#type: kind as i32,
        })),
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.driver.config.name.clone(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: [(
                "spec".to_string(),
                coxswain_proto::csi::v1::SPEC_VERSION.to_string(),
            )]
            .into_iter()
            .collect(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        let expansion = PluginCapability {
            r#type: Some(plugin_capability::Type::VolumeExpansion(VolumeExpansion {
                r#type: match self.driver.mounter.can_resize_online() {
                    true => ExpansionType::Online as i32,
                    false => ExpansionType::Offline as i32,
                },
            })),
        };
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: vec![
                service(ServiceType::ControllerService),
                service(ServiceType::VolumeAccessibilityConstraints),
                expansion,
            ],
        }))
    }

    async fn probe(
        &self,
        _request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        self.driver.blocking(|d| d.mounter.check()).await?;
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}
