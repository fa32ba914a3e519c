//! Which pod, namespace and container hold each GPU, from the kubelet's
//! PodResources API (`List` on its Unix socket), as dcgm-exporter finds them.
//! Asked once per scrape, with a deadline, so a slow or absent kubelet
//! delays a scrape by at most [`LIST_TIMEOUT`] and leaves the labels empty.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coxswain_proto::podresources::v1::ListPodResourcesRequest;
use coxswain_proto::podresources::v1::pod_resources_lister_client::PodResourcesListerClient;

use crate::Error;

/// The kubelet's PodResources socket.
pub const KUBELET_POD_RESOURCES_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";
/// How long one `List` may take.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(2);

/// The container holding a GPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct GpuOwner {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
}

/// Device ID → the container holding it.
pub type GpuOwners = BTreeMap<String, GpuOwner>;

/// Asks a PodResources socket for the holders of one resource's devices.
#[derive(Debug, Clone)]
pub struct PodResourcesSource {
    socket: PathBuf,
    resource_name: String,
}

impl PodResourcesSource {
    /// Reads `socket` for devices of `resource_name` (`nvidia.com/gpu`).
    pub fn new(socket: impl Into<PathBuf>, resource_name: impl Into<String>) -> Self {
        Self {
            socket: socket.into(),
            resource_name: resource_name.into(),
        }
    }

    /// The socket asked.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Who holds each device now. A device several containers share (a
    /// time-sliced GPU) is given to the first of them in (namespace, pod,
    /// container) order, so each GPU stays one series and sums stay right.
    pub async fn owners(&self) -> Result<GpuOwners, Error> {
        let failed = |message: String| Error::PodResources {
            path: self.socket.clone(),
            message,
        };
        let list = async {
            let channel = crate::unix::connect(&self.socket)
                .await
                .map_err(|e| failed(e.to_string()))?;
            PodResourcesListerClient::new(channel)
                .list(ListPodResourcesRequest {})
                .await
                .map_err(|status| failed(format!("List: {}", status.message())))
        };
        let response = tokio::time::timeout(LIST_TIMEOUT, list)
            .await
            .map_err(|_| failed(format!("List took longer than {LIST_TIMEOUT:?}")))??
            .into_inner();
        let mut owners = GpuOwners::new();
        for pod in response.pod_resources {
            for container in pod.containers {
                let held = container
                    .devices
                    .iter()
                    .filter(|d| d.resource_name == self.resource_name)
                    .flat_map(|d| d.device_ids.iter());
                for id in held {
                    let owner = GpuOwner {
                        namespace: pod.namespace.clone(),
                        pod: pod.name.clone(),
                        container: container.name.clone(),
                    };
                    owners
                        .entry(id.clone())
                        .and_modify(|o| {
                            if owner < *o {
                                *o = owner.clone();
                            }
                        })
                        .or_insert(owner);
                }
            }
        }
        Ok(owners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("kubelet.sock");
        let err = PodResourcesSource::new(&socket, "nvidia.com/gpu")
            .owners()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(&socket.display().to_string()),
            "{err}"
        );
    }
}
