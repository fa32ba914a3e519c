//! The kubelet's PodResources API (`k8s.io/kubelet/pkg/apis/podresources/v1`) on a Unix
//! socket, for node-local monitoring agents: NVIDIA's dcgm-exporter — and
//! `cox-nvidia-plugin --pod-resources-socket` — label each GPU's series with the pod,
//! namespace and container holding it.
//!
//! - `List`: every pod on the node; the containers of pods that hold devices, with the
//!   devices of each (the device plugin's resource name and device IDs, from the device
//!   manager's checkpoint). Pods holding nothing are listed without containers.
//! - `GetAllocatableResources`: the healthy devices of every plugin, by resource.
//! - `Get`: one pod, `NotFound` when it is not on the node.
//!
//! CPU IDs, memory and dynamic (DRA) resources are never set: the agent has no CPU or
//! memory manager, and GPUs come from device plugins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use coxswain_proto::podresources::v1 as pb;
use coxswain_proto::podresources::v1::pod_resources_lister_server::{
    PodResourcesLister, PodResourcesListerServer,
};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::pods::PodDirectory;
use crate::devices::DeviceManager;
use crate::devices::checkpoint::PodDevices;

/// The kubelet's own path of the socket, under its root.
pub const KUBELET_POD_RESOURCES_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// Answers PodResources calls from the agent's pods and device manager.
#[derive(Clone)]
pub struct PodResourcesService {
    directory: PodDirectory,
    devices: Option<DeviceManager>,
}

impl PodResourcesService {
    /// A service over the pods in `directory` and what `devices` allocated them.
    pub fn new(directory: PodDirectory, devices: Option<DeviceManager>) -> Self {
        Self { directory, devices }
    }

    fn pod(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        held: &BTreeMap<String, PodDevices>,
    ) -> pb::PodResources {
        let containers = held
            .get(uid)
            .map(|pod| {
                pod.containers
                    .iter()
                    .map(|(container, allocations)| {
                        // One entry per plugin resource, device IDs in the order held.
                        let mut by_resource: BTreeMap<&str, Vec<String>> = BTreeMap::new();
                        for allocation in allocations {
                            let ids = by_resource
                                .entry(allocation.plugin_resource.as_str())
                                .or_default();
                            ids.extend(allocation.devices.iter().map(|d| d.id.clone()));
                        }
                        pb::ContainerResources {
                            name: container.clone(),
                            devices: by_resource
                                .into_iter()
                                .map(|(resource, device_ids)| pb::ContainerDevices {
                                    resource_name: resource.to_string(),
                                    device_ids,
                                    topology: None,
                                })
                                .collect(),
                            ..Default::default()
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        pb::PodResources {
            name: name.to_string(),
            namespace: namespace.to_string(),
            containers,
        }
    }

    fn held(&self) -> BTreeMap<String, PodDevices> {
        self.devices
            .as_ref()
            .map(DeviceManager::pod_devices)
            .unwrap_or_default()
    }
}

#[tonic::async_trait]
impl PodResourcesLister for PodResourcesService {
    async fn list(
        &self,
        _: Request<pb::ListPodResourcesRequest>,
    ) -> Result<Response<pb::ListPodResourcesResponse>, Status> {
        let held = self.held();
        let pod_resources = self
            .directory
            .pods()
            .iter()
            .map(|p| self.pod(&p.namespace, &p.name, &p.uid, &held))
            .collect();
        Ok(Response::new(pb::ListPodResourcesResponse {
            pod_resources,
        }))
    }

    async fn get_allocatable_resources(
        &self,
        _: Request<pb::AllocatableResourcesRequest>,
    ) -> Result<Response<pb::AllocatableResourcesResponse>, Status> {
        let mut by_resource: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for device in self.devices.iter().flat_map(DeviceManager::devices) {
            if device.healthy {
                by_resource
                    .entry(device.resource)
                    .or_default()
                    .push(device.id);
            }
        }
        let devices = by_resource
            .into_iter()
            .map(|(resource_name, device_ids)| pb::ContainerDevices {
                resource_name,
                device_ids,
                topology: None,
            })
            .collect();
        Ok(Response::new(pb::AllocatableResourcesResponse {
            devices,
            ..Default::default()
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetPodResourcesRequest>,
    ) -> Result<Response<pb::GetPodResourcesResponse>, Status> {
        let request = request.into_inner();
        let Some(uid) = self
            .directory
            .uid(&request.pod_namespace, &request.pod_name)
        else {
            return Err(Status::not_found(format!(
                "pod {}/{} is not on this node",
                request.pod_namespace, request.pod_name
            )));
        };
        let pod = self.pod(
            &request.pod_namespace,
            &request.pod_name,
            &uid,
            &self.held(),
        );
        Ok(Response::new(pb::GetPodResourcesResponse {
            pod_resources: Some(pod),
        }))
    }
}

/// Serves `service` on `socket` (its directory made root-only, a stale socket replaced)
/// until `stop` fires.
pub fn serve(
    socket: &Path,
    service: PodResourcesService,
    stop: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(socket)?;
    let path: PathBuf = socket.to_path_buf();
    tracing::info!(socket = %path.display(), "serving the PodResources API");
    Ok(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(PodResourcesListerServer::new(service))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(socket = %path.display(), "PodResources API: {e}");
        }
        let _ = std::fs::remove_file(&path);
    }))
}
