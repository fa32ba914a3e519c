//! Controller cases: argument checks, idempotent create and delete,
//! incompatible re-creates, validation, listing, capacity and expansion.

use coxswain_proto::csi::v1::controller_service_capability::rpc::Type as Rpc;
use coxswain_proto::csi::v1::*;
use tonic::Code;

use super::suite::{CaseResult, Check, Suite, ensure, fails, ok, writer};

const UNKNOWN: &str = "csi-conformance-no-such-volume";

/// Each advertised RPC answers an empty request with something other than
/// Unimplemented.
pub async fn advertised_rpcs_are_implemented(s: &Suite) -> CaseResult {
    if s.controller.is_empty() {
        return Err(Check::Skip("controller advertises no RPCs".into()));
    }
    let mut c = s.client.controller.clone();
    for rpc in &s.controller {
        let status = match rpc {
            Rpc::CreateDeleteVolume => c.delete_volume(DeleteVolumeRequest::default()).await.err(),
            Rpc::PublishUnpublishVolume => c
                .controller_unpublish_volume(ControllerUnpublishVolumeRequest::default())
                .await
                .err(),
            Rpc::ListVolumes => c.list_volumes(ListVolumesRequest::default()).await.err(),
            Rpc::GetCapacity => c.get_capacity(GetCapacityRequest::default()).await.err(),
            Rpc::ExpandVolume => c
                .controller_expand_volume(ControllerExpandVolumeRequest::default())
                .await
                .err(),
            Rpc::CreateDeleteSnapshot => c
                .delete_snapshot(DeleteSnapshotRequest::default())
                .await
                .err(),
            Rpc::ListSnapshots => c
                .list_snapshots(ListSnapshotsRequest::default())
                .await
                .err(),
            Rpc::GetVolume => c
                .controller_get_volume(ControllerGetVolumeRequest::default())
                .await
                .err(),
            Rpc::ModifyVolume => c
                .controller_modify_volume(ControllerModifyVolumeRequest::default())
                .await
                .err(),
            _ => None,
        };
        if let Some(status) = status {
            ensure(
                status.code() != Code::Unimplemented,
                format!("{} is advertised but Unimplemented", rpc.as_str_name()),
            )?;
        }
    }
    Ok(())
}

/// CreateVolume without a name.
pub async fn create_without_name(s: &Suite) -> CaseResult {
    s.needs_controller(Rpc::CreateDeleteVolume)?;
    let req = s.create_request("");
    fails(
        s.client.controller.clone().create_volume(req).await,
        &[Code::InvalidArgument],
        "CreateVolume(name=\"\")",
    )
}

/// CreateVolume without volume capabilities.
pub async fn create_without_capabilities(s: &Suite) -> CaseResult {
    s.needs_controller(Rpc::CreateDeleteVolume)?;
    let mut req = s.create_request(&s.unique("nocaps"));
    req.volume_capabilities.clear();
    fails(
        s.client.controller.clone().create_volume(req).await,
        &[Code::InvalidArgument],
        "CreateVolume(volume_capabilities=[])",
    )
}

/// The same CreateVolume twice gives the same volume; DeleteVolume twice succeeds.
pub async fn create_delete_idempotent(s: &Suite) -> CaseResult {
    s.needs_controller(Rpc::CreateDeleteVolume)?;
    let req = s.create_request(&s.unique("idem"));
    let mut c = s.client.controller.clone();
    let first = ok(c.create_volume(req.clone()).await, "CreateVolume")?
        .volume
        .unwrap_or_default();
    let second = ok(c.create_volume(req).await, "CreateVolume (again)")?
        .volume
        .unwrap_or_default();
    ensure(
        first.volume_id == second.volume_id,
        format!("IDs differ: {} then {}", first.volume_id, second.volume_id),
    )?;
    let size = s.config.volume_size as i64;
    ensure(
        first.capacity_bytes == 0 || first.capacity_bytes >= size,
        format!("capacity {} < required {size}", first.capacity_bytes),
    )?;
    ensure(
        first.capacity_bytes == second.capacity_bytes,
        "capacities differ between the two calls",
    )?;
    for attempt in ["DeleteVolume", "DeleteVolume (again)"] {
        let req = DeleteVolumeRequest {
            volume_id: first.volume_id.clone(),
            ..Default::default()
        };
        ok(c.delete_volume(req).await, attempt)?;
    }
    Ok(())
}

/// The same name with a capacity the existing volume cannot satisfy.
pub async fn create_incompatible(s: &Suite) -> CaseResult {
    let name = s.unique("incompat");
    let volume = {
        s.needs_controller(Rpc::CreateDeleteVolume)?;
        let req = s.create_request(&name);
        ok(
            s.client.controller.clone().create_volume(req).await,
            "CreateVolume",
        )?
        .volume
        .unwrap_or_default()
    };
    let cleanup = DeleteVolumeRequest {
        volume_id: volume.volume_id.clone(),
        ..Default::default()
    };
    let mut req = s.create_request(&name);
    let bigger = volume.capacity_bytes.max(s.config.volume_size as i64) * 2;
    req.capacity_range = Some(CapacityRange {
        required_bytes: bigger,
        limit_bytes: bigger,
    });
    let result = fails(
        s.client.controller.clone().create_volume(req).await,
        &[Code::AlreadyExists],
        "CreateVolume(same name, twice the size)",
    );
    let _ = s.client.controller.clone().delete_volume(cleanup).await;
    result
}

/// required_bytes above limit_bytes can never be met.
pub async fn create_unsatisfiable_range(s: &Suite) -> CaseResult {
    s.needs_controller(Rpc::CreateDeleteVolume)?;
    let mut req = s.create_request(&s.unique("range"));
    let size = s.config.volume_size as i64;
    req.capacity_range = Some(CapacityRange {
        required_bytes: size * 2,
        limit_bytes: size,
    });
    fails(
        s.client.controller.clone().create_volume(req).await,
        &[Code::OutOfRange, Code::InvalidArgument],
        "CreateVolume(required > limit)",
    )
}

/// DeleteVolume without an ID.
pub async fn delete_without_id(s: &Suite) -> CaseResult {
    s.needs_controller(Rpc::CreateDeleteVolume)?;
    let req = DeleteVolumeRequest::default();
    fails(
        s.client.controller.clone().delete_volume(req).await,
        &[Code::InvalidArgument],
        "DeleteVolume(volume_id=\"\")",
    )
}

/// DeleteVolume of an ID the driver never made succeeds (idempotent).
pub async fn delete_unknown(s: &Suite) -> CaseResult {
    s.needs_controller(Rpc::CreateDeleteVolume)?;
    let req = DeleteVolumeRequest {
        volume_id: UNKNOWN.into(),
        ..Default::default()
    };
    ok(
        s.client.controller.clone().delete_volume(req).await,
        "DeleteVolume(unknown)",
    )
    .map(drop)
}

/// ValidateVolumeCapabilities: missing arguments, unknown volume, confirmation.
pub async fn validate_capabilities(s: &Suite) -> CaseResult {
    if !s
        .plugin
        .contains(&coxswain_proto::csi::v1::plugin_capability::service::Type::ControllerService)
    {
        return Err(Check::Skip("no CONTROLLER_SERVICE".into()));
    }
    let mut c = s.client.controller.clone();
    let req = |id: &str, caps: Vec<VolumeCapability>| ValidateVolumeCapabilitiesRequest {
        volume_id: id.into(),
        volume_capabilities: caps,
        ..Default::default()
    };
    fails(
        c.validate_volume_capabilities(req("", vec![writer()]))
            .await,
        &[Code::InvalidArgument],
        "ValidateVolumeCapabilities(volume_id=\"\")",
    )?;
    fails(
        c.validate_volume_capabilities(req(UNKNOWN, vec![writer()]))
            .await,
        &[Code::NotFound],
        "ValidateVolumeCapabilities(unknown)",
    )?;
    let volume = s.create("validate").await?;
    fails(
        c.validate_volume_capabilities(req(&volume.volume_id, vec![]))
            .await,
        &[Code::InvalidArgument],
        "ValidateVolumeCapabilities(volume_capabilities=[])",
    )?;
    let resp = ok(
        c.validate_volume_capabilities(req(&volume.volume_id, vec![writer()]))
            .await,
        "ValidateVolumeCapabilities",
    )?;
    ensure(
        resp.confirmed.is_some(),
        format!(
            "the capability the volume was created with is not confirmed: {}",
            resp.message
        ),
    )
}

/// ListVolumes includes a volume just created.
pub async fn list_volumes(s: &Suite) -> CaseResult {
    s.needs_controller(Rpc::ListVolumes)?;
    let volume = s.create("list").await?;
    let mut token = String::new();
    loop {
        let req = ListVolumesRequest {
            max_entries: 0,
            starting_token: token,
        };
        let resp = ok(
            s.client.controller.clone().list_volumes(req).await,
            "ListVolumes",
        )?;
        if resp.entries.iter().any(|e| {
            e.volume
                .as_ref()
                .is_some_and(|v| v.volume_id == volume.volume_id)
        }) {
            return Ok(());
        }
        if resp.next_token.is_empty() {
            return Err(Check::Fail(format!(
                "ListVolumes does not list {}",
                volume.volume_id
            )));
        }
        token = resp.next_token;
    }
}

/// GetCapacity answers, and CreateVolume beyond it is refused.
pub async fn get_capacity(s: &Suite) -> CaseResult {
    s.needs_controller(Rpc::GetCapacity)?;
    let info = ok(
        s.client
            .node
            .clone()
            .node_get_info(NodeGetInfoRequest {})
            .await,
        "NodeGetInfo",
    )?;
    let req = GetCapacityRequest {
        volume_capabilities: vec![writer()],
        parameters: s.config.parameters.clone(),
        accessible_topology: info.accessible_topology,
    };
    let resp = ok(
        s.client.controller.clone().get_capacity(req).await,
        "GetCapacity",
    )?;
    ensure(
        resp.available_capacity >= 0,
        "available_capacity is negative",
    )?;
    if s.needs_controller(Rpc::CreateDeleteVolume).is_err() || resp.available_capacity > 1 << 50 {
        return Ok(());
    }
    let mut req = s.create_request(&s.unique("toobig"));
    let too_big = resp.available_capacity + (1 << 30);
    req.capacity_range = Some(CapacityRange {
        required_bytes: too_big,
        limit_bytes: 0,
    });
    let result = s.client.controller.clone().create_volume(req).await;
    if let Ok(r) = &result {
        let id = r
            .get_ref()
            .volume
            .as_ref()
            .map(|v| v.volume_id.clone())
            .unwrap_or_default();
        let _ = s
            .client
            .controller
            .clone()
            .delete_volume(DeleteVolumeRequest {
                volume_id: id,
                ..Default::default()
            })
            .await;
    }
    fails(
        result,
        &[Code::ResourceExhausted, Code::OutOfRange],
        "CreateVolume(GetCapacity + 1 GiB)",
    )
}

/// ControllerExpandVolume: missing arguments, unknown volume, growth.
pub async fn expand(s: &Suite) -> CaseResult {
    s.needs_controller(Rpc::ExpandVolume)?;
    let mut c = s.client.controller.clone();
    let range = |bytes: i64| {
        Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        })
    };
    let size = s.config.volume_size as i64 * 2;
    let req = |id: &str, capacity_range| ControllerExpandVolumeRequest {
        volume_id: id.into(),
        capacity_range,
        ..Default::default()
    };
    fails(
        c.controller_expand_volume(req("", range(size))).await,
        &[Code::InvalidArgument],
        "ControllerExpandVolume(volume_id=\"\")",
    )?;
    fails(
        c.controller_expand_volume(req(UNKNOWN, range(size))).await,
        &[Code::NotFound],
        "ControllerExpandVolume(unknown)",
    )?;
    let volume = s.create("expand").await?;
    fails(
        c.controller_expand_volume(req(&volume.volume_id, None))
            .await,
        &[Code::InvalidArgument],
        "ControllerExpandVolume(capacity_range unset)",
    )?;
    let resp = ok(
        c.controller_expand_volume(req(&volume.volume_id, range(size)))
            .await,
        "ControllerExpandVolume",
    )?;
    ensure(
        resp.capacity_bytes >= size,
        format!("capacity {} after expanding to {size}", resp.capacity_bytes),
    )?;
    let again = ok(
        c.controller_expand_volume(req(&volume.volume_id, range(size)))
            .await,
        "ControllerExpandVolume (again)",
    )?;
    ensure(
        again.capacity_bytes == resp.capacity_bytes,
        "a repeated expansion changed the capacity",
    )
}
