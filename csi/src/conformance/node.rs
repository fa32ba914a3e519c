//! Node cases: capability consistency, NodeGetInfo, argument checks,
//! unknown volumes and ordering (publish before stage).

use coxswain_proto::csi::v1::node_service_capability::rpc::Type as Rpc;
use coxswain_proto::csi::v1::*;
use tonic::Code;

use super::suite::{CaseResult, Suite, ensure, fails, ok, writer};

const UNKNOWN: &str = "csi-conformance-no-such-volume";

/// Each advertised node RPC answers an empty request with something other
/// than Unimplemented.
pub async fn advertised_rpcs_are_implemented(s: &Suite) -> CaseResult {
    let mut n = s.client.node.clone();
    for rpc in &s.node {
        let status = match rpc {
            Rpc::StageUnstageVolume => n
                .node_unstage_volume(NodeUnstageVolumeRequest::default())
                .await
                .err(),
            Rpc::GetVolumeStats => n
                .node_get_volume_stats(NodeGetVolumeStatsRequest::default())
                .await
                .err(),
            Rpc::ExpandVolume => n
                .node_expand_volume(NodeExpandVolumeRequest::default())
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

/// NodeGetInfo: a node ID, and topology when the plugin has constraints.
pub async fn get_info(s: &Suite) -> CaseResult {
    use coxswain_proto::csi::v1::plugin_capability::service::Type as Service;
    let info = ok(
        s.client
            .node
            .clone()
            .node_get_info(NodeGetInfoRequest {})
            .await,
        "NodeGetInfo",
    )?;
    ensure(!info.node_id.is_empty(), "node_id is empty")?;
    ensure(
        info.max_volumes_per_node >= 0,
        "max_volumes_per_node is negative",
    )?;
    if s.plugin.contains(&Service::VolumeAccessibilityConstraints) {
        ensure(
            info.accessible_topology
                .is_some_and(|t| !t.segments.is_empty()),
            "VOLUME_ACCESSIBILITY_CONSTRAINTS is advertised but NodeGetInfo has no topology",
        )?;
    }
    Ok(())
}

/// A volume ID to pass where the argument under test is another one.
async fn some_volume(s: &Suite) -> String {
    match s.create("args").await {
        Ok(v) => v.volume_id,
        Err(_) => UNKNOWN.to_string(),
    }
}

/// Every node RPC with each required argument left out.
pub async fn missing_arguments(s: &Suite) -> CaseResult {
    let id = some_volume(s).await;
    let path = s.path("args");
    let mut n = s.client.node.clone();
    let invalid = [Code::InvalidArgument];
    if s.stages() {
        let stage = |volume_id: &str, staging_target_path: &str, cap: Option<VolumeCapability>| {
            NodeStageVolumeRequest {
                volume_id: volume_id.into(),
                staging_target_path: staging_target_path.into(),
                volume_capability: cap,
                ..Default::default()
            }
        };
        fails(
            n.node_stage_volume(stage("", &path, Some(writer()))).await,
            &invalid,
            "NodeStageVolume(volume_id=\"\")",
        )?;
        fails(
            n.node_stage_volume(stage(&id, "", Some(writer()))).await,
            &invalid,
            "NodeStageVolume(staging_target_path=\"\")",
        )?;
        fails(
            n.node_stage_volume(stage(&id, &path, None)).await,
            &invalid,
            "NodeStageVolume(volume_capability unset)",
        )?;
        let unstage = |volume_id: &str, staging_target_path: &str| NodeUnstageVolumeRequest {
            volume_id: volume_id.into(),
            staging_target_path: staging_target_path.into(),
        };
        fails(
            n.node_unstage_volume(unstage("", &path)).await,
            &invalid,
            "NodeUnstageVolume(volume_id=\"\")",
        )?;
        fails(
            n.node_unstage_volume(unstage(&id, "")).await,
            &invalid,
            "NodeUnstageVolume(staging_target_path=\"\")",
        )?;
    }
    let publish = |volume_id: &str, target_path: &str, cap: Option<VolumeCapability>| {
        NodePublishVolumeRequest {
            volume_id: volume_id.into(),
            staging_target_path: path.clone(),
            target_path: target_path.into(),
            volume_capability: cap,
            ..Default::default()
        }
    };
    fails(
        n.node_publish_volume(publish("", &path, Some(writer())))
            .await,
        &invalid,
        "NodePublishVolume(volume_id=\"\")",
    )?;
    fails(
        n.node_publish_volume(publish(&id, "", Some(writer())))
            .await,
        &invalid,
        "NodePublishVolume(target_path=\"\")",
    )?;
    fails(
        n.node_publish_volume(publish(&id, &path, None)).await,
        &invalid,
        "NodePublishVolume(volume_capability unset)",
    )?;
    let unpublish = |volume_id: &str, target_path: &str| NodeUnpublishVolumeRequest {
        volume_id: volume_id.into(),
        target_path: target_path.into(),
    };
    fails(
        n.node_unpublish_volume(unpublish("", &path)).await,
        &invalid,
        "NodeUnpublishVolume(volume_id=\"\")",
    )?;
    fails(
        n.node_unpublish_volume(unpublish(&id, "")).await,
        &invalid,
        "NodeUnpublishVolume(target_path=\"\")",
    )?;
    if s.needs_node(Rpc::GetVolumeStats).is_ok() {
        let stats = |volume_id: &str, volume_path: &str| NodeGetVolumeStatsRequest {
            volume_id: volume_id.into(),
            volume_path: volume_path.into(),
            staging_target_path: String::new(),
        };
        fails(
            n.node_get_volume_stats(stats("", &path)).await,
            &invalid,
            "NodeGetVolumeStats(volume_id=\"\")",
        )?;
        fails(
            n.node_get_volume_stats(stats(&id, "")).await,
            &invalid,
            "NodeGetVolumeStats(volume_path=\"\")",
        )?;
    }
    if s.needs_node(Rpc::ExpandVolume).is_ok() {
        let expand = |volume_id: &str, volume_path: &str| NodeExpandVolumeRequest {
            volume_id: volume_id.into(),
            volume_path: volume_path.into(),
            ..Default::default()
        };
        fails(
            n.node_expand_volume(expand("", &path)).await,
            &invalid,
            "NodeExpandVolume(volume_id=\"\")",
        )?;
        fails(
            n.node_expand_volume(expand(&id, "")).await,
            &invalid,
            "NodeExpandVolume(volume_path=\"\")",
        )?;
    }
    Ok(())
}

/// Stage, publish, stats and expand of an ID the driver never made.
pub async fn unknown_volumes(s: &Suite) -> CaseResult {
    let path = s.path("unknown");
    let mut n = s.client.node.clone();
    let nf = [Code::NotFound];
    if s.stages() {
        let req = NodeStageVolumeRequest {
            volume_id: UNKNOWN.into(),
            staging_target_path: path.clone(),
            volume_capability: Some(writer()),
            ..Default::default()
        };
        fails(
            n.node_stage_volume(req).await,
            &nf,
            "NodeStageVolume(unknown)",
        )?;
    }
    let req = NodePublishVolumeRequest {
        volume_id: UNKNOWN.into(),
        staging_target_path: if s.stages() {
            path.clone()
        } else {
            String::new()
        },
        target_path: s.path("unknown-target"),
        volume_capability: Some(writer()),
        ..Default::default()
    };
    fails(
        n.node_publish_volume(req).await,
        &nf,
        "NodePublishVolume(unknown)",
    )?;
    if s.needs_node(Rpc::GetVolumeStats).is_ok() {
        let req = NodeGetVolumeStatsRequest {
            volume_id: UNKNOWN.into(),
            volume_path: path.clone(),
            staging_target_path: String::new(),
        };
        fails(
            n.node_get_volume_stats(req).await,
            &nf,
            "NodeGetVolumeStats(unknown)",
        )?;
    }
    if s.needs_node(Rpc::ExpandVolume).is_ok() {
        let req = NodeExpandVolumeRequest {
            volume_id: UNKNOWN.into(),
            volume_path: path,
            ..Default::default()
        };
        fails(
            n.node_expand_volume(req).await,
            &nf,
            "NodeExpandVolume(unknown)",
        )?;
    }
    Ok(())
}

/// A driver that stages must not publish what it has not staged.
pub async fn publish_before_stage(s: &Suite) -> CaseResult {
    s.needs_node(Rpc::StageUnstageVolume)?;
    let volume = s.create("unstaged").await?;
    let req = s.publish_request(&volume.volume_id, &s.path("never-staged"), false);
    fails(
        s.client.node.clone().node_publish_volume(req).await,
        &[Code::FailedPrecondition],
        "NodePublishVolume(not staged)",
    )
}
