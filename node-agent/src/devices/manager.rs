//! The device manager: the registration server on `kubelet.sock`, one session per
//! registered plugin, and the inventory published through a `watch`. Allocation at
//! container start is in `allocate.rs`; which devices a container gets, in [`super::plan`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use coxswain_proto::deviceplugin::v1beta1::{self as v1beta1, RegisterRequest};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::apply::{HostDeviceNodes, NodeStat};
use super::cdi::{CDI_SPEC_DIRS, CdiResolver};
use super::checkpoint::Checkpoint;
use super::registration_socket;
use super::session::{self, SessionTarget};
use super::state::{DeviceHealth, PluginEntry, State};
use super::{DeviceInventory, Error, unix};

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
    pub(super) config: DeviceManagerConfig,
    state: Mutex<State>,
    inventory: watch::Sender<DeviceInventory>,
    pub(super) cancel: CancellationToken,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
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

    pub(super) fn checkpoint_path(&self) -> PathBuf {
        Checkpoint::path(&self.config.plugin_dir)
    }

    /// Writes the checkpoint back when its file is gone (the directory was wiped).
    pub(super) fn restore_checkpoint_file(&self) {
        let path = self.checkpoint_path();
        if path.exists() {
            return;
        }
        let state = self.lock();
        if let Err(e) = state.checkpoint.save(&path) {
            tracing::error!(error = %e, "restoring the device checkpoint failed");
        }
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
    pub(super) shared: Arc<Shared>,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) cdi: Arc<CdiResolver>,
    pub(super) nodes: Arc<dyn NodeStat>,
    /// Where device health Events go; none until [`DeviceManager::with_events`].
    pub(super) events: Option<Arc<dyn super::EventSink>>,
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
        registration_socket::start(shared.clone(), dir.join(v1beta1::KUBELET_SOCKET), cancel)?;
        tracing::info!(dir = %dir.display(), "device manager serving kubelet.sock");
        Ok(Self {
            shared,
            runtime: tokio::runtime::Handle::current(),
            cdi,
            nodes: Arc::new(HostDeviceNodes),
            events: None,
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

    /// How many registrations the manager has accepted since it started (each
    /// plugin start or re-registration counts one).
    pub fn registrations(&self) -> u64 {
        self.shared.lock().next_generation
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

    /// What each pod's containers hold, from the checkpoint: pod uid → its record.
    pub fn pod_devices(&self) -> BTreeMap<String, super::checkpoint::PodDevices> {
        self.shared.lock().checkpoint.pods.clone()
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
}
