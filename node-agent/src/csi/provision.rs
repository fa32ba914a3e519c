//! The node-deployment provisioner's core: one `WatchVolumes` event in, the
//! report for the control plane out. PROVISION calls CreateVolume on the
//! StorageClass's provisioner driver (name `pvc-<claim uid>`, the claim's
//! storage request, the class's parameters, capabilities from the claim's access
//! modes and volume mode, this node's topology as the requisite); DELETE calls
//! DeleteVolume. Errors become the report's `error` (`<gRPC code>: <message>`):
//! the caller retries with back-off. Testable without the control plane.

use std::collections::BTreeMap;

use coxswain_api::quantity::parse_quantity;
use coxswain_proto::csi::v1::volume_capability::{
    AccessMode, AccessType, BlockVolume, MountVolume,
};
use coxswain_proto::csi::v1::{
    CapacityRange, CreateVolumeRequest, DeleteVolumeRequest, Topology, TopologyRequirement,
    VolumeCapability,
};
use coxswain_proto::node::v1alpha1::{ReportProvisioningRequest, ReportVolumeDeletedRequest};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use super::source::access_mode;
use super::{CsiDrivers, CsiError, call};

pub use coxswain_api::csi_names::FSTYPE_PARAMETER;
/// The volume name the provisioner gives a claim's volume: `pvc-<claim uid>`.
pub use coxswain_api::csi_names::provisioned_volume_name as volume_name;

/// Provisions `claim` of `class` on this node; the report says how it went.
pub async fn provision(
    node_name: &str,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    drivers: &CsiDrivers,
) -> ReportProvisioningRequest {
    let meta = &claim.metadata;
    let mut report = ReportProvisioningRequest {
        node_name: node_name.to_string(),
        claim_namespace: meta.namespace.clone().unwrap_or_default(),
        claim_name: meta.name.clone().unwrap_or_default(),
        claim_uid: meta.uid.clone().unwrap_or_default(),
        driver: class.provisioner.clone(),
        ..Default::default()
    };
    match create_volume(claim, class, drivers).await {
        Ok(volume) => {
            report.volume_id = volume.volume_id;
            report.capacity_bytes = volume.capacity_bytes;
            report.volume_context = volume.volume_context.into_iter().collect();
        }
        Err(e) => report.error = e,
    }
    report
}

/// The CreateVolume request for `claim` of `class` on a node of `topology`, or
/// what is wrong with the claim.
pub fn create_request(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    topology: &BTreeMap<String, String>,
) -> Result<CreateVolumeRequest, String> {
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    if uid.is_empty() {
        return Err("InvalidArgument: the claim has no metadata.uid".into());
    }
    let spec = claim.spec.clone().unwrap_or_default();
    let resources = spec.resources.unwrap_or_default();
    let bytes = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
                 field: &str|
     -> Result<i64, String> {
        match q {
            None => Ok(0),
            Some(q) => parse_quantity(q)
                .map(|p| p.ceil_units().clamp(0, i64::MAX as i128) as i64)
                .map_err(|e| format!("InvalidArgument: {field}: {e}")),
        }
    };
    let request = resources.requests.as_ref().and_then(|r| r.get("storage"));
    if request.is_none() {
        return Err("InvalidArgument: the claim has no spec.resources.requests.storage".into());
    }
    let required = bytes(request, "spec.resources.requests.storage")?;
    if required <= 0 {
        return Err(
            "InvalidArgument: spec.resources.requests.storage must be greater than zero".into(),
        );
    }
    let limit = bytes(
        resources.limits.as_ref().and_then(|l| l.get("storage")),
        "spec.resources.limits.storage",
    )?;
    let mut parameters = class.parameters.clone().unwrap_or_default();
    let fs_type = parameters.remove(FSTYPE_PARAMETER).unwrap_or_default();
    let name = volume_name(&uid);
    parameters.insert(
        "csi.storage.k8s.io/pvc/name".into(),
        claim.metadata.name.clone().unwrap_or_default(),
    );
    parameters.insert(
        "csi.storage.k8s.io/pvc/namespace".into(),
        claim.metadata.namespace.clone().unwrap_or_default(),
    );
    parameters.insert("csi.storage.k8s.io/pv/name".into(), name.clone());
    let block = spec.volume_mode.as_deref() == Some("Block");
    let modes = spec.access_modes.unwrap_or_default();
    if modes.is_empty() {
        return Err("InvalidArgument: the claim has no spec.accessModes".into());
    }
    let mut capabilities = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        let mode = access_mode(mode).ok_or_else(|| {
            format!("InvalidArgument: spec.accessModes[{i}] {mode:?} is not an access mode")
        })?;
        capabilities.push(VolumeCapability {
            access_mode: Some(AccessMode { mode: mode as i32 }),
            access_type: Some(if block {
                AccessType::Block(BlockVolume {})
            } else {
                AccessType::Mount(MountVolume {
                    fs_type: fs_type.clone(),
                    ..Default::default()
                })
            }),
        });
    }
    let accessibility = (!topology.is_empty()).then(|| {
        let here = Topology {
            segments: topology.clone().into_iter().collect(),
        };
        TopologyRequirement {
            requisite: vec![here.clone()],
            preferred: vec![here],
        }
    });
    Ok(CreateVolumeRequest {
        name,
        capacity_range: Some(CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        }),
        volume_capabilities: capabilities,
        parameters: parameters.into_iter().collect(),
        accessibility_requirements: accessibility,
        ..Default::default()
    })
}

async fn create_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    drivers: &CsiDrivers,
) -> Result<coxswain_proto::csi::v1::Volume, String> {
    let driver = drivers
        .get(&class.provisioner)
        .map_err(|e| format!("Unavailable: {e}"))?;
    let request = create_request(claim, class, &driver.topology)?;
    let name = request.name.clone();
    let mut client = driver.client.controller.clone();
    let created = call(
        &driver.name,
        "CreateVolume",
        &name,
        client.create_volume(request),
    )
    .await
    .map_err(report_error)?;
    created.volume.ok_or_else(|| {
        format!(
            "Internal: CSI driver {:?} answered CreateVolume of {name} without a volume",
            driver.name
        )
    })
}

/// Deletes the released volume `pv` through its CSI driver; the report says how it went.
pub async fn delete(
    node_name: &str,
    pv: &PersistentVolume,
    drivers: &CsiDrivers,
) -> ReportVolumeDeletedRequest {
    let mut report = ReportVolumeDeletedRequest {
        node_name: node_name.to_string(),
        name: pv.metadata.name.clone().unwrap_or_default(),
        uid: pv.metadata.uid.clone().unwrap_or_default(),
        error: String::new(),
    };
    let Some(csi) = pv.spec.as_ref().and_then(|s| s.csi.clone()) else {
        report.error = format!(
            "InvalidArgument: persistent volume {:?} has no csi source",
            report.name
        );
        return report;
    };
    let driver = match drivers.get(&csi.driver) {
        Ok(driver) => driver,
        Err(e) => {
            report.error = format!("Unavailable: {e}");
            return report;
        }
    };
    let mut client = driver.client.controller.clone();
    let request = DeleteVolumeRequest {
        volume_id: csi.volume_handle.clone(),
        secrets: Default::default(),
    };
    if let Err(e) = call(
        &driver.name,
        "DeleteVolume",
        &csi.volume_handle,
        client.delete_volume(request),
    )
    .await
    {
        report.error = report_error(e);
    }
    report
}

/// A CSI error as a report's `error`: `<gRPC code>: <driver's message>`.
fn report_error(e: CsiError) -> String {
    match e {
        CsiError::Call { code, message, .. } => format!("{code:?}: {message}"),
        other => format!("Unavailable: {other}"),
    }
}
