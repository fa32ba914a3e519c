//! Node lifecycle cases: the idempotent stage/publish/unpublish/unstage
//! round trip with data written through the target, read-only publishes,
//! volume stats and expansion.

use coxswain_proto::csi::v1::node_service_capability::rpc::Type as Rpc;
use coxswain_proto::csi::v1::volume_usage::Unit;
use coxswain_proto::csi::v1::*;
use tonic::Code;

use super::suite::{CaseResult, Check, Suite, ensure, fails, ok, writer};

/// The full lifecycle with every call made twice.
pub async fn lifecycle(s: &Suite) -> CaseResult {
    let volume = s.create("lifecycle").await?;
    let id = volume.volume_id.clone();
    let staging = s.stage(&id).await?;
    s.stage_again(&id, &staging).await?;
    let mut n = s.client.node.clone();
    let publish = s.publish_request(&id, &staging, false);
    let target = publish.target_path.clone();
    ok(
        n.node_publish_volume(publish.clone()).await,
        "NodePublishVolume",
    )?;
    ok(
        n.node_publish_volume(publish).await,
        "NodePublishVolume (again)",
    )?;
    let file = std::path::Path::new(&target).join("conformance.txt");
    std::fs::write(&file, b"written through the target path")
        .map_err(|e| Check::Fail(format!("writing {}: {e}", file.display())))?;
    for attempt in ["NodeUnpublishVolume", "NodeUnpublishVolume (again)"] {
        let req = NodeUnpublishVolumeRequest {
            volume_id: id.clone(),
            target_path: target.clone(),
        };
        ok(n.node_unpublish_volume(req).await, attempt)?;
    }
    if s.stages() {
        for attempt in ["NodeUnstageVolume", "NodeUnstageVolume (again)"] {
            let req = NodeUnstageVolumeRequest {
                volume_id: id.clone(),
                staging_target_path: staging.clone(),
            };
            ok(n.node_unstage_volume(req).await, attempt)?;
        }
    }
    let mut c = s.client.controller.clone();
    for attempt in ["DeleteVolume", "DeleteVolume (again)"] {
        ok(
            c.delete_volume(DeleteVolumeRequest {
                volume_id: id.clone(),
                ..Default::default()
            })
            .await,
            attempt,
        )?;
    }
    Ok(())
}

/// A read-only publish refuses writes; a writable one beside it accepts them.
pub async fn readonly_publish(s: &Suite) -> CaseResult {
    if !s.config.check_data {
        return Err(Check::Skip("data checks are off".into()));
    }
    let volume = s.create("readonly").await?;
    let staging = s.stage(&volume.volume_id).await?;
    let mut n = s.client.node.clone();
    let ro = s.publish_request(&volume.volume_id, &staging, true);
    ok(
        n.node_publish_volume(ro.clone()).await,
        "NodePublishVolume(readonly)",
    )?;
    let file = std::path::Path::new(&ro.target_path).join("must-fail");
    match std::fs::write(&file, b"x") {
        Err(e) if e.raw_os_error() == Some(30) => Ok(()),
        Err(e) => Err(Check::Fail(format!(
            "write to read-only publish failed with {e}, expected EROFS"
        ))),
        Ok(()) => Err(Check::Fail(format!(
            "wrote {} through a read-only publish",
            file.display()
        ))),
    }
}

/// NodeGetVolumeStats of a published volume reports bytes.
pub async fn stats(s: &Suite) -> CaseResult {
    s.needs_node(Rpc::GetVolumeStats)?;
    let volume = s.create("stats").await?;
    let staging = s.stage(&volume.volume_id).await?;
    let publish = s.publish_request(&volume.volume_id, &staging, false);
    let target = publish.target_path.clone();
    ok(
        s.client.node.clone().node_publish_volume(publish).await,
        "NodePublishVolume",
    )?;
    let req = NodeGetVolumeStatsRequest {
        volume_id: volume.volume_id.clone(),
        volume_path: target,
        staging_target_path: staging,
    };
    let resp = ok(
        s.client.node.clone().node_get_volume_stats(req).await,
        "NodeGetVolumeStats",
    )?;
    let bytes = resp.usage.iter().find(|u| u.unit == Unit::Bytes as i32);
    let bytes = bytes.ok_or_else(|| Check::Fail("no BYTES usage".into()))?;
    ensure(
        bytes.total > 0 && bytes.used >= 0 && bytes.available >= 0,
        format!("implausible usage {bytes:?}"),
    )?;
    let req = NodeGetVolumeStatsRequest {
        volume_id: volume.volume_id,
        volume_path: s.path("elsewhere"),
        staging_target_path: String::new(),
    };
    fails(
        s.client.node.clone().node_get_volume_stats(req).await,
        &[Code::NotFound],
        "NodeGetVolumeStats(path not published)",
    )
}

/// Bytes NodeGetVolumeStats reports for `path`, when stats are advertised.
async fn total_bytes(s: &Suite, id: &str, path: &str) -> Result<Option<i64>, Check> {
    if s.needs_node(Rpc::GetVolumeStats).is_err() {
        return Ok(None);
    }
    let req = NodeGetVolumeStatsRequest {
        volume_id: id.into(),
        volume_path: path.into(),
        staging_target_path: String::new(),
    };
    let resp = ok(
        s.client.node.clone().node_get_volume_stats(req).await,
        "NodeGetVolumeStats",
    )?;
    Ok(resp
        .usage
        .iter()
        .find(|u| u.unit == Unit::Bytes as i32)
        .map(|u| u.total))
}

/// Expansion as advertised: ONLINE grows a published volume
/// (ControllerExpandVolume, then NodeExpandVolume); OFFLINE grows an
/// unpublished one, which then stages and publishes with the new size.
pub async fn expand(s: &Suite) -> CaseResult {
    use coxswain_proto::csi::v1::controller_service_capability::rpc::Type as ControllerRpc;
    use coxswain_proto::csi::v1::plugin_capability::volume_expansion::Type as Expansion;
    let Some(mode) = s.expansion else {
        return Err(Check::Skip("plugin advertises no VolumeExpansion".into()));
    };
    let online = mode == Expansion::Online;
    let volume = s.create("expand").await?;
    let id = volume.volume_id.clone();
    let size = volume.capacity_bytes.max(s.config.volume_size as i64) * 2;
    let range = Some(CapacityRange {
        required_bytes: size,
        limit_bytes: 0,
    });
    let controller_expand = || async {
        if s.needs_controller(ControllerRpc::ExpandVolume).is_err() {
            return Ok(());
        }
        let req = ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: range,
            ..Default::default()
        };
        ok(
            s.client
                .controller
                .clone()
                .controller_expand_volume(req)
                .await,
            "ControllerExpandVolume",
        )
        .map(drop)
    };
    if !online {
        controller_expand().await?;
    }
    let staging = s.stage(&id).await?;
    let publish = s.publish_request(&id, &staging, false);
    let target = publish.target_path.clone();
    ok(
        s.client.node.clone().node_publish_volume(publish).await,
        "NodePublishVolume",
    )?;
    let before = if online {
        total_bytes(s, &id, &target).await?
    } else {
        None
    };
    if online {
        controller_expand().await?;
    }
    if s.needs_node(Rpc::ExpandVolume).is_ok() {
        let req = NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: target.clone(),
            capacity_range: range,
            staging_target_path: staging,
            volume_capability: Some(writer()),
            ..Default::default()
        };
        let resp = ok(
            s.client.node.clone().node_expand_volume(req).await,
            "NodeExpandVolume",
        )?;
        ensure(
            resp.capacity_bytes == 0 || resp.capacity_bytes >= size,
            format!("capacity {} after expanding to {size}", resp.capacity_bytes),
        )?;
    }
    let after = total_bytes(s, &id, &target).await?;
    let floor = before.unwrap_or(volume.capacity_bytes);
    match after {
        Some(after) => ensure(
            after > floor,
            format!(
                "filesystem has {after} bytes after expanding to {size}, no more than the {floor} before"
            ),
        ),
        None => Ok(()),
    }
}
