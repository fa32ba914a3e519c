//! The plugin's lifecycle: discover GPUs, start the health monitor, serve the
//! gRPC services on `<plugin-dir>/<endpoint>`, register with
//! `<plugin-dir>/kubelet.sock`, and start over when the socket directory is
//! wiped or `kubelet.sock` is recreated (a restarted agent or kubelet), as
//! the device-plugin protocol expects.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coxswain_proto::deviceplugin::v1alpha1::device_attributes_server::DeviceAttributesServer;
use coxswain_proto::deviceplugin::v1alpha1::simulated_gpu_control_server::SimulatedGpuControlServer;
use coxswain_proto::deviceplugin::v1beta1::{self as v1beta1, device_plugin_server};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;

use crate::allocation::{AllocationContext, CdiIndex};
use crate::gpu::GpuBackend;
use crate::health::{HealthMonitor, HealthTable, XidLog, XidPolicy};
use crate::service::PluginState;
use crate::service::attributes::DeviceAttributesService;
use crate::service::control::SimulatedGpuControlService;
use crate::service::device_plugin::DevicePluginService;
use crate::{Error, unix};

/// Default directory of `kubelet.sock` and the plugin sockets.
pub const DEFAULT_PLUGIN_DIR: &str = "/var/lib/coxswain/device-plugins";
/// Default resource name.
pub const DEFAULT_RESOURCE_NAME: &str = "nvidia.com/gpu";

/// How the plugin runs.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// Directory holding `kubelet.sock` and the plugin's socket.
    pub plugin_dir: PathBuf,
    /// Resource name, `vendor.domain/type`.
    pub resource_name: String,
    /// Which XIDs are ignored.
    pub policy: XidPolicy,
    /// Hold-down before an unhealthy GPU is re-checked.
    pub recheck_after: Duration,
    /// How often the socket files are checked for being wiped or recreated.
    pub watch_interval: Duration,
    /// Where CDI specs are looked for.
    pub cdi_dirs: Vec<PathBuf>,
}

impl PluginConfig {
    /// Defaults for `plugin_dir` and `resource_name`.
    pub fn new(plugin_dir: impl Into<PathBuf>, resource_name: impl Into<String>) -> Self {
        Self {
            plugin_dir: plugin_dir.into(),
            resource_name: resource_name.into(),
            policy: XidPolicy::default(),
            recheck_after: Duration::from_secs(30),
            watch_interval: Duration::from_secs(1),
            cdi_dirs: crate::allocation::cdi::CDI_SPEC_DIRS
                .iter()
                .map(PathBuf::from)
                .collect(),
        }
    }

    /// The plugin's socket file name, e.g. `nvidia-gpu.sock`.
    pub fn endpoint(&self) -> Result<String, Error> {
        let invalid = || Error::InvalidResourceName(self.resource_name.clone());
        let (domain, kind) = self.resource_name.split_once('/').ok_or_else(invalid)?;
        let vendor = domain.split('.').next().unwrap_or_default();
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        };
        if !domain.contains('.') || !ok(domain) || !ok(kind) {
            return Err(invalid());
        }
        Ok(format!("{vendor}-{kind}.sock"))
    }

    /// Path of the registration socket.
    pub fn kubelet_socket(&self) -> PathBuf {
        self.plugin_dir.join(v1beta1::KUBELET_SOCKET)
    }
}

/// A discovered set of GPUs ready to be served.
pub struct NvidiaPlugin {
    config: PluginConfig,
    endpoint: String,
    state: Arc<PluginState>,
}

impl NvidiaPlugin {
    /// Discovers the backend's GPUs and prepares the services.
    pub fn new(config: PluginConfig, backend: Arc<dyn GpuBackend>) -> Result<Self, Error> {
        let endpoint = config.endpoint()?;
        let gpus = backend.discover()?;
        let dirs: Vec<&std::path::Path> = config.cdi_dirs.iter().map(PathBuf::as_path).collect();
        let allocation = AllocationContext {
            control_nodes: backend.control_nodes(),
            driver_mounts: backend.driver_mounts(),
            cdi: CdiIndex::load(&dirs),
        };
        let state = PluginState {
            resource_name: config.resource_name.clone(),
            health: HealthTable::new(gpus.iter().map(|g| g.id.as_str())),
            xids: XidLog::default(),
            policy: config.policy.clone(),
            backend,
            gpus,
            allocation,
        };
        Ok(Self {
            config,
            endpoint,
            state: Arc::new(state),
        })
    }

    /// The shared state (GPUs, health) the services read.
    pub fn state(&self) -> &Arc<PluginState> {
        &self.state
    }

    /// Path of the plugin's own socket.
    pub fn socket_path(&self) -> PathBuf {
        self.config.plugin_dir.join(&self.endpoint)
    }

    /// Serves and registers until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), Error> {
        let monitor = HealthMonitor {
            backend: self.state.backend.clone(),
            table: self.state.health.clone(),
            xids: self.state.xids.clone(),
            policy: self.config.policy.clone(),
            recheck_after: self.config.recheck_after,
        };
        let monitor_cancel = cancel.child_token();
        let monitor_task = tokio::task::spawn_blocking({
            let token = monitor_cancel.clone();
            move || monitor.run(token)
        });
        let result = self.serve_loop(&cancel).await;
        monitor_cancel.cancel();
        let _ = monitor_task.await;
        result
    }

    async fn serve_loop(&self, cancel: &CancellationToken) -> Result<(), Error> {
        let socket = self.socket_path();
        while !cancel.is_cancelled() {
            let serving = cancel.child_token();
            let mut server = self.spawn_server(&socket, serving.clone())?;
            // Taken right after binding: a socket removed before this (an agent
            // clearing the directory as it starts) is noticed as gone.
            let own = unix::file_identity(&socket);
            let outcome = tokio::select! {
                outcome = session::run(self, &socket, own, cancel) => outcome,
                ended = &mut server => {
                    serving.cancel();
                    if let Ok(Err(e)) = ended {
                        return Err(e);
                    }
                    tracing::warn!(socket = %socket.display(), "device plugin server stopped; serving again");
                    tokio::time::sleep(self.config.watch_interval).await;
                    continue;
                }
            };
            serving.cancel();
            if let Ok(Err(e)) = server.await {
                return Err(e);
            }
            outcome?;
        }
        // Tell a kubelet watching the directory that the plugin is gone.
        let _ = std::fs::remove_file(&socket);
        Ok(())
    }

    fn spawn_server(
        &self,
        socket: &std::path::Path,
        serving: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<Result<(), Error>>, Error> {
        let listener = unix::bind(socket)?;
        let state = self.state.clone();
        let control = state.backend.simulated().then(|| {
            SimulatedGpuControlServer::new(SimulatedGpuControlService::new(state.clone()))
        });
        let router = tonic::transport::Server::builder()
            .add_service(device_plugin_server::DevicePluginServer::new(
                DevicePluginService::new(state.clone(), serving.clone()),
            ))
            .add_service(DeviceAttributesServer::new(DeviceAttributesService::new(
                state,
            )))
            .add_optional_service(control);
        let path = socket.to_path_buf();
        tracing::info!(socket = %path.display(), "serving device plugin");
        Ok(tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(
                    UnixListenerStream::new(listener),
                    serving.cancelled_owned(),
                )
                .await
                .map_err(|source| Error::Serve {
                    path,
                    source: Box::new(source),
                })
        }))
    }
}

mod session;
