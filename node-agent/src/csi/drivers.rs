//! The CSI drivers of this node (`cox agent --csi-driver NAME=unix:///path`):
//! each is dialled at start, retried with back-off while its socket is not up,
//! and asked NodeGetInfo (node ID, topology) and NodeGetCapabilities
//! (STAGE_UNSTAGE_VOLUME). Reached drivers go into a shared registry the pod
//! workers read, and their node IDs into a `watch` the control-plane link puts on
//! the Node as kubelet's `csi.volume.kubernetes.io/nodeid` annotation.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use coxswain_csi::CsiClient;
use coxswain_proto::csi::v1::node_service_capability::Type as CapabilityType;
use coxswain_proto::csi::v1::node_service_capability::rpc::Type as RpcType;
use coxswain_proto::csi::v1::{
    GetPluginInfoRequest, NodeGetCapabilitiesRequest, NodeGetInfoRequest,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{CsiError, call};
use crate::agent::Backoff;

/// The Node annotation kubelet writes: JSON `{driverName: nodeID}`.
pub use coxswain_api::csi_names::CSI_NODE_ID_ANNOTATION as NODE_ID_ANNOTATION;

/// One `--csi-driver NAME=unix:///path` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsiDriverConfig {
    /// The driver's name (a StorageClass's `provisioner`, a PV's `csi.driver`).
    pub name: String,
    /// Its socket, `unix:///path`.
    pub endpoint: String,
}

impl FromStr for CsiDriverConfig {
    type Err = CsiError;

    fn from_str(s: &str) -> Result<Self, CsiError> {
        let (name, endpoint) = s
            .split_once('=')
            .ok_or_else(|| CsiError::BadDriverFlag(s.to_string()))?;
        if name.is_empty() || !endpoint.starts_with("unix://") || endpoint.len() <= 7 {
            return Err(CsiError::BadDriverFlag(s.to_string()));
        }
        Ok(Self {
            name: name.to_string(),
            endpoint: endpoint.to_string(),
        })
    }
}

/// What the agent learnt from a driver it reached.
#[derive(Debug, Clone)]
pub struct DriverInfo {
    /// The driver's name, as configured.
    pub name: String,
    /// Its socket.
    pub endpoint: String,
    /// Its clients (one channel; reconnects by itself).
    pub client: CsiClient,
    /// NodeGetInfo's node ID.
    pub node_id: String,
    /// NodeGetInfo's accessible topology of this node.
    pub topology: BTreeMap<String, String>,
    /// Whether the driver has STAGE_UNSTAGE_VOLUME (else publish goes straight to the target).
    pub stage_unstage: bool,
}

impl DriverInfo {
    /// Dials `config` once: GetPluginInfo (the name must match), NodeGetInfo,
    /// NodeGetCapabilities.
    pub async fn connect(config: &CsiDriverConfig) -> Result<Self, CsiError> {
        let name = config.name.as_str();
        let mut client =
            CsiClient::connect(&config.endpoint)
                .await
                .map_err(|e| CsiError::Connect {
                    driver: name.to_string(),
                    endpoint: config.endpoint.clone(),
                    message: e.to_string(),
                })?;
        let plugin = call(
            name,
            "GetPluginInfo",
            "",
            client.identity.get_plugin_info(GetPluginInfoRequest {}),
        )
        .await?;
        if plugin.name != config.name {
            return Err(CsiError::Connect {
                driver: name.to_string(),
                endpoint: config.endpoint.clone(),
                message: format!(
                    "the driver there calls itself {:?}, not {name:?} (fix --csi-driver)",
                    plugin.name
                ),
            });
        }
        let info = call(
            name,
            "NodeGetInfo",
            "",
            client.node.node_get_info(NodeGetInfoRequest {}),
        )
        .await?;
        let capabilities = call(
            name,
            "NodeGetCapabilities",
            "",
            client
                .node
                .node_get_capabilities(NodeGetCapabilitiesRequest {}),
        )
        .await?;
        let stage_unstage = capabilities.capabilities.iter().any(|c| {
            matches!(&c.r#type, Some(CapabilityType::Rpc(rpc))
                if rpc.r#type == RpcType::StageUnstageVolume as i32)
        });
        Ok(Self {
            name: config.name.clone(),
            endpoint: config.endpoint.clone(),
            client,
            node_id: info.node_id,
            topology: info
                .accessible_topology
                .map(|t| t.segments.into_iter().collect())
                .unwrap_or_default(),
            stage_unstage,
        })
    }
}

/// The drivers this node has reached. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CsiDrivers {
    drivers: Arc<RwLock<BTreeMap<String, DriverInfo>>>,
    node_ids: watch::Sender<BTreeMap<String, String>>,
}

impl Default for CsiDrivers {
    fn default() -> Self {
        Self {
            drivers: Arc::default(),
            node_ids: watch::channel(BTreeMap::new()).0,
        }
    }
}

impl CsiDrivers {
    /// The driver `name`, when it has been reached.
    pub fn get(&self, name: &str) -> Result<DriverInfo, CsiError> {
        let drivers = self.drivers.read().unwrap_or_else(|e| e.into_inner());
        drivers.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = drivers.keys().map(String::as_str).collect();
            CsiError::UnknownDriver {
                driver: name.to_string(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            }
        })
    }

    /// Adds (or replaces) a reached driver.
    pub fn insert(&self, info: DriverInfo) {
        let (name, node_id) = (info.name.clone(), info.node_id.clone());
        self.drivers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), info);
        self.node_ids.send_modify(|ids| {
            ids.insert(name, node_id);
        });
    }

    /// Driver name → node ID of every reached driver, updated as drivers come up.
    pub fn node_ids(&self) -> watch::Receiver<BTreeMap<String, String>> {
        self.node_ids.subscribe()
    }

    /// Dials every driver of `configs` in the background, retrying each (200 ms
    /// doubling to 5 s) until it answers or `shutdown`.
    pub fn start(&self, configs: &[CsiDriverConfig], shutdown: &CancellationToken) {
        for config in configs {
            let config = config.clone();
            let drivers = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
                loop {
                    match DriverInfo::connect(&config).await {
                        Ok(info) => {
                            tracing::info!(driver = %info.name, node_id = %info.node_id, stage_unstage = info.stage_unstage, "CSI driver registered");
                            drivers.insert(info);
                            return;
                        }
                        Err(e) => {
                            let delay = backoff.next_delay();
                            tracing::warn!("{e}; retrying in {delay:?}");
                            tokio::select! {
                                _ = tokio::time::sleep(delay) => {}
                                _ = shutdown.cancelled() => return,
                            }
                        }
                    }
                }
            });
        }
    }

    /// Waits until `count` drivers are reached, for at most `timeout`; returns
    /// whether they all were.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> bool {
        let mut ids = self.node_ids();
        tokio::time::timeout(timeout, ids.wait_for(|ids| ids.len() >= count))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The JSON value of [`NODE_ID_ANNOTATION`] for `node_ids`.
pub fn node_id_annotation(node_ids: &BTreeMap<String, String>) -> String {
    serde_json::to_string(node_ids).unwrap_or_else(|_| "{}".into())
}
