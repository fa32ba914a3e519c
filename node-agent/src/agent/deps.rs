//! The one place an agent's [`WorkerDeps`] are put together from its
//! configuration: the real sandbox, runc or crun, the local image store, the
//! volume manager and the system clock. Devices start as none; the daemon
//! swaps in its device manager when it runs one.
//! The network starts as loopback-only; the daemon swaps in the pod network once
//! the control plane has assigned the node's pod CIDR (see `node_network`).

use std::path::PathBuf;
use std::sync::Arc;

use super::AgentError;
use crate::AgentConfig;
use crate::clock::SystemClock;
use crate::devices::NoDevices;
use crate::images::{LocalImageStore, RegistryPuller};
use crate::mounts::SystemMounter;
use crate::network::NoNetwork;
use crate::runtime::{OciRuntime, RuntimeKind};
use crate::sandbox::SandboxManager;
use crate::volumes::VolumeManager;
use crate::worker::WorkerDeps;

/// The dependencies of every pod worker of a real agent: `runtime` (runc or crun;
/// `None` picks runc, else crun) running containers under the shim binary `shim`
/// (`coxswain-shim`, or any binary that runs `shim::main` when started under that name).
pub fn worker_deps(
    config: &AgentConfig,
    runtime: Option<RuntimeKind>,
    shim: PathBuf,
) -> Result<WorkerDeps, AgentError> {
    if !shim.is_file() {
        return Err(AgentError::ShimMissing { path: shim });
    }
    let config = Arc::new(config.clone());
    let runtime = OciRuntime::detect(runtime, config.runtime_state_dir(), shim)?;
    let mounter = Arc::new(SystemMounter);
    let images = LocalImageStore::new(config.images_dir(), mounter.clone())
        .with_registry(RegistryPuller::new(config.insecure_registries.clone()));
    // An agent or `cox image` killed mid-import left its temporaries; nothing else removes them.
    images.sweep_temporaries();
    Ok(WorkerDeps {
        sandbox: Arc::new(SandboxManager::system(&config)),
        runtime: Arc::new(runtime),
        images: Arc::new(images),
        volumes: Arc::new(VolumeManager::new(
            config.allowed_host_paths.clone(),
            mounter,
        )),
        clock: Arc::new(SystemClock),
        network: Arc::new(NoNetwork),
        devices: Arc::new(NoDevices),
        config,
    })
}
