//! The suite's context: a client, what the driver advertises, the volumes
//! a run made (cleaned up at the end), and the checks cases are built from.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use coxswain_proto::csi::v1::controller_service_capability::rpc::Type as ControllerRpc;
use coxswain_proto::csi::v1::node_service_capability::rpc::Type as NodeRpc;
use coxswain_proto::csi::v1::plugin_capability::service::Type as PluginService;
use coxswain_proto::csi::v1::plugin_capability::volume_expansion::Type as ExpansionType;
use coxswain_proto::csi::v1::volume_capability::access_mode::Mode;
use coxswain_proto::csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use coxswain_proto::csi::v1::*;
use tonic::{Code, Response, Status};

use super::Config;
use crate::CsiClient;

/// Why a case did not pass.
#[derive(Debug)]
pub enum Check {
    /// The driver broke a rule of the spec.
    Fail(String),
    /// The case does not apply to this driver.
    Skip(String),
}

/// What a case returns.
pub type CaseResult = Result<(), Check>;

/// Fails with `msg` unless `cond`.
pub fn ensure(cond: bool, msg: impl Into<String>) -> CaseResult {
    if cond {
        Ok(())
    } else {
        Err(Check::Fail(msg.into()))
    }
}

/// The response of a call that must succeed.
pub fn ok<T>(result: Result<Response<T>, Status>, call: &str) -> Result<T, Check> {
    result.map(Response::into_inner).map_err(|s| {
        Check::Fail(format!(
            "{call}: expected OK, got {:?}: {}",
            s.code(),
            s.message()
        ))
    })
}

/// Checks that a call failed with one of `codes`.
pub fn fails<T>(result: Result<Response<T>, Status>, codes: &[Code], call: &str) -> CaseResult {
    match result {
        Ok(_) => Err(Check::Fail(format!("{call}: expected {codes:?}, got OK"))),
        Err(s) if codes.contains(&s.code()) => Ok(()),
        Err(s) => Err(Check::Fail(format!(
            "{call}: expected {codes:?}, got {:?}: {}",
            s.code(),
            s.message()
        ))),
    }
}

/// A mount capability with the given access mode and the default filesystem.
pub fn mount_capability(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

/// The capability the suite's volumes use.
pub fn writer() -> VolumeCapability {
    mount_capability(Mode::SingleNodeWriter)
}

/// Shared state of one run.
#[derive(Debug)]
pub struct Suite {
    /// Clients of the driver under test.
    pub client: CsiClient,
    /// The run's configuration.
    pub config: Config,
    /// Services the plugin advertises.
    pub plugin: Vec<PluginService>,
    /// Controller RPCs advertised.
    pub controller: Vec<ControllerRpc>,
    /// Node RPCs advertised.
    pub node: Vec<NodeRpc>,
    /// The volume expansion the plugin advertises, if any.
    pub expansion: Option<ExpansionType>,
    created: Mutex<Vec<String>>,
    staged: Mutex<Vec<(String, String)>>,
    published: Mutex<Vec<(String, String)>>,
    counter: AtomicU32,
}

impl Suite {
    /// A suite over `client` with the capabilities it advertises.
    pub fn new(
        client: CsiClient,
        config: Config,
        plugin: &[PluginCapability],
        controller: Vec<ControllerRpc>,
        node: Vec<NodeRpc>,
    ) -> Self {
        let expansion = plugin.iter().find_map(|c| match &c.r#type {
            Some(plugin_capability::Type::VolumeExpansion(e)) => {
                ExpansionType::try_from(e.r#type).ok()
            }
            _ => None,
        });
        let plugin = plugin
            .iter()
            .filter_map(|c| match &c.r#type {
                Some(plugin_capability::Type::Service(s)) => PluginService::try_from(s.r#type).ok(),
                _ => None,
            })
            .collect();
        Self {
            client,
            config,
            plugin,
            controller,
            node,
            expansion,
            created: Mutex::default(),
            staged: Mutex::default(),
            published: Mutex::default(),
            counter: AtomicU32::new(0),
        }
    }

    /// Skips unless the controller advertises `rpc`.
    pub fn needs_controller(&self, rpc: ControllerRpc) -> CaseResult {
        if !self.plugin.contains(&PluginService::ControllerService) {
            return Err(Check::Skip("no CONTROLLER_SERVICE".into()));
        }
        if !self.controller.contains(&rpc) {
            return Err(Check::Skip(format!(
                "controller does not advertise {}",
                rpc.as_str_name()
            )));
        }
        Ok(())
    }

    /// Skips unless the node advertises `rpc`.
    pub fn needs_node(&self, rpc: NodeRpc) -> CaseResult {
        if !self.node.contains(&rpc) {
            return Err(Check::Skip(format!(
                "node does not advertise {}",
                rpc.as_str_name()
            )));
        }
        Ok(())
    }

    /// Whether the node stages volumes (then publish needs a staging path).
    pub fn stages(&self) -> bool {
        self.node.contains(&NodeRpc::StageUnstageVolume)
    }

    /// A name unique to this run.
    pub fn unique(&self, what: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{what}-{n}", self.config.name_prefix)
    }

    /// A fresh directory path under the work directory (not created).
    pub fn path(&self, what: &str) -> String {
        self.config
            .work_dir
            .join(self.unique(what))
            .display()
            .to_string()
    }

    /// A CreateVolume request for `name` of the configured size.
    pub fn create_request(&self, name: &str) -> CreateVolumeRequest {
        CreateVolumeRequest {
            name: name.to_string(),
            capacity_range: Some(CapacityRange {
                required_bytes: self.config.volume_size as i64,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![writer()],
            parameters: self.config.parameters.clone(),
            ..Default::default()
        }
    }

    /// Creates a volume (remembered for cleanup) and returns it.
    pub async fn create(&self, what: &str) -> Result<Volume, Check> {
        self.needs_controller(ControllerRpc::CreateDeleteVolume)?;
        let req = self.create_request(&self.unique(what));
        let resp = ok(
            self.client.controller.clone().create_volume(req).await,
            "CreateVolume",
        )?;
        let volume = resp
            .volume
            .ok_or_else(|| Check::Fail("CreateVolume: response has no volume".into()))?;
        ensure(
            !volume.volume_id.is_empty(),
            "CreateVolume: empty volume_id",
        )?;
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(volume.volume_id.clone());
        Ok(volume)
    }

    /// Stages `id` at a fresh path, returning the path ("" when the node
    /// does not stage).
    pub async fn stage(&self, id: &str) -> Result<String, Check> {
        if !self.stages() {
            return Ok(String::new());
        }
        let path = self.path("staging");
        std::fs::create_dir_all(&path).map_err(|e| Check::Fail(format!("{path}: {e}")))?;
        let req = NodeStageVolumeRequest {
            volume_id: id.to_string(),
            staging_target_path: path.clone(),
            volume_capability: Some(writer()),
            ..Default::default()
        };
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id.to_string(), path.clone()));
        ok(
            self.client.node.clone().node_stage_volume(req).await,
            "NodeStageVolume",
        )?;
        Ok(path)
    }

    /// A NodePublishVolume request for a fresh target path.
    pub fn publish_request(
        &self,
        id: &str,
        staging: &str,
        readonly: bool,
    ) -> NodePublishVolumeRequest {
        let target = self.path("target");
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id.to_string(), target.clone()));
        NodePublishVolumeRequest {
            volume_id: id.to_string(),
            staging_target_path: staging.to_string(),
            target_path: target,
            volume_capability: Some(writer()),
            readonly,
            ..Default::default()
        }
    }

    /// Undoes every publish, stage and create of the run, ignoring errors.
    pub async fn cleanup(&self) {
        let take = |m: &Mutex<Vec<(String, String)>>| {
            std::mem::take(&mut *m.lock().unwrap_or_else(|p| p.into_inner()))
        };
        let mut node = self.client.node.clone();
        for (volume_id, target_path) in take(&self.published) {
            let _ = node
                .node_unpublish_volume(NodeUnpublishVolumeRequest {
                    volume_id,
                    target_path,
                })
                .await;
        }
        for (volume_id, staging_target_path) in take(&self.staged) {
            let _ = node
                .node_unstage_volume(NodeUnstageVolumeRequest {
                    volume_id,
                    staging_target_path,
                })
                .await;
        }
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
        for volume_id in created {
            let req = DeleteVolumeRequest {
                volume_id,
                secrets: HashMap::new(),
            };
            let _ = self.client.controller.clone().delete_volume(req).await;
        }
    }

    /// The work directory.
    pub fn work_dir(&self) -> PathBuf {
        self.config.work_dir.clone()
    }
}

impl Suite {
    /// Stages `id` at `path` a second time: must succeed (idempotent).
    pub async fn stage_again(&self, id: &str, path: &str) -> CaseResult {
        if !self.stages() {
            return Ok(());
        }
        let req = NodeStageVolumeRequest {
            volume_id: id.to_string(),
            staging_target_path: path.to_string(),
            volume_capability: Some(writer()),
            ..Default::default()
        };
        ok(
            self.client.node.clone().node_stage_volume(req).await,
            "NodeStageVolume (again)",
        )
        .map(drop)
    }
}
