//! The device manager: the registration server on `kubelet.sock`, one session per
//! registered plugin, the inventory published through a `watch`, and allocation at
//! container start (see [`super::allocate`] for which devices a container gets).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use coxswain_api::k8s::{Container, Pod};
use coxswain_proto::deviceplugin::v1beta1::device_plugin_client::DevicePluginClient;
use coxswain_proto::deviceplugin::v1beta1::registration_server::RegistrationServer;
use coxswain_proto::deviceplugin::v1beta1::{
    self as v1beta1, AllocateRequest, ContainerAllocateRequest, ContainerAllocateResponse,
    ContainerPreferredAllocationRequest, PreStartContainerRequest, PreferredAllocationRequest,
    RegisterRequest,
};
use oci_spec::runtime::Spec;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::Channel;

use super::allocate::{self, ResourceRequest};
use super::apply::{ContainerEdits, HostDeviceNodes, NodeStat, apply_edits};
use super::cdi::{CDI_SPEC_DIRS, CdiResolver};
use super::checkpoint::{Checkpoint, ContainerAllocation};
use super::registration::RegistrationService;
use super::session::{self, SessionTarget};
use super::state::{DeviceHealth, PluginEntry, State};
use super::{DeviceInventory, DeviceStage, Error, unix};

/// How the device manager runs.
#[derive(Debug, Clone)]
pub struct DeviceManagerConfig {
    /// Directory of `kubelet.sock`, the plugins' sockets and the checkpoint
    /// (`<agent root>/device-plugins` by default).
    pub plugin_dir: PathBuf,
    /// This node's name (the ResourceSlices' pool and `nodeName`).
    pub node_name: String,
    /// Where CDI specs are looked for.
    pub cdi_dirs: Vec<PathBuf>,
}

impl DeviceManagerConfig {
    /// `plugin_dir` and `node_name`, CDI specs in `/etc/cdi` and `/var/run/cdi`.
    pub fn new(plugin_dir: impl Into<PathBuf>, node_name: impl Into<String>) -> Self {
        Self {
            plugin_dir: plugin_dir.into(),
            node_name: node_name.into(),
            cdi_dirs: CDI_SPEC_DIRS.iter().map(PathBuf::from).collect(),
        }
    }
}

/// State shared by the registration server, the sessions and the manager.
pub(super) struct Shared {
    config: DeviceManagerConfig,
    state: Mutex<State>,
    inventory: watch::Sender<DeviceInventory>,
    cancel: CancellationToken,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state and publishes the inventory if that changed it.
    pub(super) fn update<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.lock();
        let result = change(&mut state);
        let inventory = state.inventory(&self.config.node_name);
        self.inventory.send_if_modified(|current| {
            let changed = *current != inventory;
            if changed {
                *current = inventory;
            }
            changed
        });
        result
    }

    fn checkpoint_path(&self) -> PathBuf {
        Checkpoint::path(&self.config.plugin_dir)
    }

    /// Accepts a registration (already validated) and starts its session.
    pub(super) fn register(self: &Arc<Self>, req: &RegisterRequest) -> Result<(), Status> {
        let dir = &self.config.plugin_dir;
        let resource = req.resource_name.clone();
        let (generation, cancel) = self.update(|state| {
            if let Some(existing) = state.plugins.get(&resource) {
                let other_live = existing.session_running
                    && existing.endpoint != req.endpoint
                    && dir.join(&existing.endpoint).exists();
                if other_live {
                    return Err(Status::already_exists(format!(
                        "resource_name {resource:?}: already registered by the plugin serving {} \
                         (still running); stop it before registering another",
                        dir.join(&existing.endpoint).display()
                    )));
                }
                // The same plugin again (restarted, or re-registering): replace it.
                existing.cancel.cancel();
            }
            state.next_generation += 1;
            let generation = state.next_generation;
            let cancel = self.cancel.child_token();
            state.plugins.insert(
                resource.clone(),
                PluginEntry {
                    endpoint: req.endpoint.clone(),
                    generation,
                    session_running: true,
                    streaming: false,
                    options: req.options.unwrap_or_default(),
                    channel: None,
                    devices: BTreeMap::new(),
                    attributes: BTreeMap::new(),
                    cancel: cancel.clone(),
                },
            );
            Ok((generation, cancel))
        })?;
        let target = SessionTarget {
            resource,
            socket: dir.join(&req.endpoint),
            generation,
        };
        tokio::spawn(session::run(self.clone(), target, cancel));
        Ok(())
    }
}

/// The agent's device manager. Cheap to clone; every clone is the same manager.
#[derive(Clone)]
pub struct DeviceManager {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    cdi: Arc<CdiResolver>,
    nodes: Arc<dyn NodeStat>,
}

impl std::fmt::Debug for DeviceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceManager")
            .field("plugin_dir", &self.shared.config.plugin_dir)
            .finish_non_exhaustive()
    }
}

fn remove_stale_sockets(dir: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::FileTypeExt;
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_socket()) {
            unix::remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

impl DeviceManager {
    /// Starts the manager: creates the plugin directory, removes the sockets left
    /// there (so every plugin binds again and re-registers), loads the checkpoint,
    /// and serves `Registration` on a fresh `kubelet.sock` until `cancel` fires.
    pub async fn start(
        config: DeviceManagerConfig,
        cancel: CancellationToken,
    ) -> Result<Self, Error> {
        let dir = config.plugin_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        remove_stale_sockets(&dir)?;
        let checkpoint = Checkpoint::load(&Checkpoint::path(&dir))?;
        let (inventory, _) = watch::channel(DeviceInventory::default());
        let cdi = Arc::new(CdiResolver::new(config.cdi_dirs.clone()));
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                checkpoint,
                ..Default::default()
            }),
            inventory,
            cancel: cancel.clone(),
        });
        let socket = dir.join(v1beta1::KUBELET_SOCKET);
        let listener = unix::bind(&socket)?;
        let server = tonic::transport::Server::builder().add_service(RegistrationServer::new(
            RegistrationService {
                shared: shared.clone(),
            },
        ));
        tokio::spawn(async move {
            let served = server
                .serve_with_incoming_shutdown(
                    UnixListenerStream::new(listener),
                    cancel.cancelled_owned(),
                )
                .await;
            if let Err(e) = served {
                tracing::error!(socket = %socket.display(), error = %e, "device plugin registration server failed");
            }
            let _ = std::fs::remove_file(&socket);
        });
        tracing::info!(dir = %dir.display(), "device manager serving kubelet.sock");
        Ok(Self {
            shared,
            runtime: tokio::runtime::Handle::current(),
            cdi,
            nodes: Arc::new(HostDeviceNodes),
        })
    }

    /// Replaces how device nodes are read (a fake in unit tests).
    pub fn with_node_stat(mut self, nodes: Arc<dyn NodeStat>) -> Self {
        self.nodes = nodes;
        self
    }

    /// Path of the registration socket.
    pub fn kubelet_socket(&self) -> PathBuf {
        self.shared.config.plugin_dir.join(v1beta1::KUBELET_SOCKET)
    }

    /// The current inventory.
    pub fn inventory(&self) -> DeviceInventory {
        self.shared.inventory.borrow().clone()
    }

    /// A receiver that changes whenever the inventory does (a device registered,
    /// gone, or changing health).
    pub fn watch_inventory(&self) -> watch::Receiver<DeviceInventory> {
        self.shared.inventory.subscribe()
    }

    /// Every advertised device and its health.
    pub fn devices(&self) -> Vec<DeviceHealth> {
        let state = self.shared.lock();
        state
            .plugins
            .iter()
            .filter(|(_, p)| p.streaming)
            .flat_map(|(resource, p)| {
                p.devices.iter().map(move |(id, d)| DeviceHealth {
                    resource: resource.clone(),
                    id: id.clone(),
                    healthy: d.healthy,
                })
            })
            .collect()
    }

    /// Pods holding a device its plugin reports unhealthy: pod uid → device IDs.
    /// The agent sets a condition and an Event on them.
    pub fn pods_on_unhealthy_devices(&self) -> BTreeMap<String, Vec<String>> {
        let state = self.shared.lock();
        let unhealthy: BTreeSet<&String> = state
            .plugins
            .values()
            .filter(|p| p.streaming)
            .flat_map(|p| {
                p.devices
                    .iter()
                    .filter(|(_, d)| !d.healthy)
                    .map(|(id, _)| id)
            })
            .collect();
        let mut affected: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, pods) in state.checkpoint.holders() {
            if unhealthy.contains(&id) {
                for uid in pods.into_keys() {
                    affected.entry(uid).or_default().push(id.clone());
                }
            }
        }
        affected
    }

    /// The devices each pod holds, from the checkpoint: pod uid → device IDs.
    pub fn allocations(&self) -> BTreeMap<String, BTreeSet<String>> {
        let state = self.shared.lock();
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, pods) in state.checkpoint.holders() {
            for uid in pods.into_keys() {
                out.entry(uid).or_default().insert(id.clone());
            }
        }
        out
    }

    fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), Error> {
        checkpoint.save(&self.shared.checkpoint_path())
    }

    fn release(&self, change: impl FnOnce(&mut Checkpoint) -> bool) {
        let saved = self.shared.update(|state| {
            change(&mut state.checkpoint).then(|| self.save_checkpoint(&state.checkpoint))
        });
        if let Some(Err(e)) = saved {
            tracing::error!(error = %e, "saving the device checkpoint failed");
        }
    }

    /// The devices for `container` of `pod`: reuses the checkpointed allocation
    /// (a restarted container), else asks the plugins to `Allocate` and records it.
    pub async fn allocate(
        &self,
        pod: &Pod,
        container: &Container,
    ) -> Result<ContainerEdits, Error> {
        let requests = allocate::plan(pod, container)?;
        if requests.is_empty() {
            return Ok(ContainerEdits::default());
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let recorded = {
            let state = self.shared.lock();
            state
                .checkpoint
                .pods
                .get(&uid)
                .and_then(|p| p.containers.get(&container.name))
                .cloned()
                .unwrap_or_default()
        };
        let covered = requests.iter().all(|r| {
            recorded
                .iter()
                .any(|a| a.resource == r.resource && !a.devices.is_empty())
        });
        let allocations = if covered {
            recorded
        } else {
            let mut done = Vec::new();
            for request in &requests {
                match self.allocate_resource(&uid, &container.name, request).await {
                    Ok(a) => done.push(a),
                    Err(e) => {
                        self.release(|c| {
                            let Some(p) = c.pods.get_mut(&uid) else {
                                return false;
                            };
                            let removed = p.containers.remove(&container.name).is_some();
                            if p.containers.is_empty() {
                                c.pods.remove(&uid);
                            }
                            removed
                        });
                        return Err(e);
                    }
                }
            }
            done
        };
        let mut edits = ContainerEdits::default();
        for allocation in &allocations {
            let response = ContainerAllocateResponse::from(&allocation.response);
            edits.extend(ContainerEdits::from_response(&response));
            for cdi in &response.cdi_devices {
                edits.extend(self.cdi.resolve(&cdi.name)?);
            }
        }
        Ok(edits)
    }

    /// Picks (or checks) the devices of one request and reserves them, so that a
    /// concurrent allocation cannot take them while the plugin is being asked.
    fn reserve(
        &self,
        uid: &str,
        container: &str,
        request: &ResourceRequest,
        ids: &[String],
    ) -> Result<(), Error> {
        self.shared.update(|state| {
            let plugin = state
                .plugins
                .get(&request.plugin_resource)
                .filter(|p| p.streaming)
                .ok_or_else(|| Error::NoPlugin {
                    resource: request.plugin_resource.clone(),
                })?;
            for id in ids {
                match plugin.devices.get(id) {
                    None => {
                        return Err(Error::DeviceUnavailable {
                            id: id.clone(),
                            resource: request.plugin_resource.clone(),
                            reason: "not advertised by the plugin".into(),
                        });
                    }
                    Some(d) if !d.healthy => {
                        return Err(Error::DeviceUnavailable {
                            id: id.clone(),
                            resource: request.plugin_resource.clone(),
                            reason: "unhealthy".into(),
                        });
                    }
                    Some(_) => {}
                }
            }
            allocate::check_free(&state.checkpoint.holders(), ids, request.milli, uid)?;
            let pod = state.checkpoint.pods.entry(uid.to_string()).or_default();
            let list = pod.containers.entry(container.to_string()).or_default();
            list.retain(|a| a.resource != request.resource);
            list.push(ContainerAllocation {
                resource: request.resource.clone(),
                plugin_resource: request.plugin_resource.clone(),
                devices: allocate::held(ids, request.milli),
                response: Default::default(),
            });
            Ok(())
        })
    }

    fn plugin_client(
        &self,
        resource: &str,
    ) -> Result<(DevicePluginClient<Channel>, v1beta1::DevicePluginOptions), Error> {
        let state = self.shared.lock();
        state
            .plugins
            .get(resource)
            .filter(|p| p.streaming)
            .and_then(|p| Some((DevicePluginClient::new(p.channel.clone()?), p.options)))
            .ok_or_else(|| Error::NoPlugin {
                resource: resource.to_string(),
            })
    }

    async fn choose(
        &self,
        uid: &str,
        request: &ResourceRequest,
        client: &mut DevicePluginClient<Channel>,
        options: &v1beta1::DevicePluginOptions,
    ) -> Result<Vec<String>, Error> {
        if let Some(ids) = &request.chosen {
            return Ok(ids.clone());
        }
        let free = {
            let state = self.shared.lock();
            let healthy = state
                .plugins
                .get(&request.plugin_resource)
                .map(|p| p.healthy_ids())
                .unwrap_or_default();
            allocate::free_devices(&state.checkpoint.holders(), &healthy, request.milli, uid)
        };
        if free.len() < request.count {
            return Err(Error::NotEnoughDevices {
                resource: request.plugin_resource.clone(),
                wanted: request.count,
                free: free.len(),
            });
        }
        if options.get_preferred_allocation_available && request.count > 0 {
            let preferred = client
                .get_preferred_allocation(PreferredAllocationRequest {
                    container_requests: vec![ContainerPreferredAllocationRequest {
                        available_device_i_ds: free.clone(),
                        must_include_device_i_ds: Vec::new(),
                        allocation_size: request.count as i32,
                    }],
                })
                .await;
            match preferred {
                Ok(r) => {
                    let ids = r
                        .into_inner()
                        .container_responses
                        .into_iter()
                        .next()
                        .map(|c| c.device_i_ds)
                        .unwrap_or_default();
                    if ids.len() == request.count && ids.iter().all(|id| free.contains(id)) {
                        return Ok(ids);
                    }
                    tracing::warn!(resource = %request.plugin_resource, "preferred allocation unusable; taking the first free devices");
                }
                Err(status) => {
                    tracing::warn!(resource = %request.plugin_resource, error = %status.message(), "GetPreferredAllocation failed; taking the first free devices");
                }
            }
        }
        Ok(free.into_iter().take(request.count).collect())
    }

    async fn allocate_resource(
        &self,
        uid: &str,
        container: &str,
        request: &ResourceRequest,
    ) -> Result<ContainerAllocation, Error> {
        let (mut client, options) = self.plugin_client(&request.plugin_resource)?;
        let ids = self.choose(uid, request, &mut client, &options).await?;
        self.reserve(uid, container, request, &ids)?;
        let rpc = |call: &'static str| {
            let resource = request.plugin_resource.clone();
            move |status: Status| Error::Rpc {
                resource,
                call,
                status: Box::new(status),
            }
        };
        let response = client
            .allocate(AllocateRequest {
                container_requests: vec![ContainerAllocateRequest {
                    devices_ids: ids.clone(),
                }],
            })
            .await
            .map_err(rpc("Allocate"))?
            .into_inner()
            .container_responses
            .into_iter()
            .next()
            .unwrap_or_default();
        if options.pre_start_required {
            client
                .pre_start_container(PreStartContainerRequest {
                    devices_ids: ids.clone(),
                })
                .await
                .map_err(rpc("PreStartContainer"))?;
        }
        let allocation = ContainerAllocation {
            resource: request.resource.clone(),
            plugin_resource: request.plugin_resource.clone(),
            devices: allocate::held(&ids, request.milli),
            response: (&response).into(),
        };
        self.shared.update(|state| {
            let list = state
                .checkpoint
                .pods
                .entry(uid.to_string())
                .or_default()
                .containers
                .entry(container.to_string())
                .or_default();
            list.retain(|a| a.resource != request.resource);
            list.push(allocation.clone());
            self.save_checkpoint(&state.checkpoint)
        })?;
        Ok(allocation)
    }

    /// Runs `allocate` on the manager's runtime from a blocking thread.
    fn allocate_blocking(&self, pod: &Pod, container: &Container) -> Result<ContainerEdits, Error> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (manager, pod, container) = (self.clone(), pod.clone(), container.clone());
        self.runtime.spawn(async move {
            let _ = tx.send(manager.allocate(&pod, &container).await);
        });
        rx.recv().map_err(|_| Error::Stopped)?
    }
}

impl DeviceStage for DeviceManager {
    fn prepare_container(
        &self,
        pod: &Pod,
        container: &Container,
        spec: &mut Spec,
    ) -> Result<(), Error> {
        if allocate::extended_requests(container).is_empty() {
            return Ok(());
        }
        let edits = self.allocate_blocking(pod, container)?;
        apply_edits(spec, &edits, self.nodes.as_ref())
    }

    fn release_pod(&self, uid: &str) {
        self.release(|c| c.pods.remove(uid).is_some());
    }

    fn retain_pods(&self, live: &BTreeSet<String>) {
        self.release(|c| c.retain_pods(live));
    }
}
