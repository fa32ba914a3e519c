//! Allocation at container start: reuse a container's recorded devices, or pick
//! them (the annotation's, else the plugin's preferred among the free healthy
//! ones), reserve them, ask the plugin to `Allocate` (and `PreStartContainer` when
//! its options say so), record the answer in the checkpoint, and apply it to the
//! OCI spec through the [`DeviceStage`] the pod worker calls.

use std::collections::BTreeSet;

use coxswain_api::k8s::{Container, Pod};
use coxswain_proto::deviceplugin::v1beta1::device_plugin_client::DevicePluginClient;
use coxswain_proto::deviceplugin::v1beta1::{
    self as v1beta1, AllocateRequest, ContainerAllocateRequest, ContainerAllocateResponse,
    ContainerPreferredAllocationRequest, PreStartContainerRequest, PreferredAllocationRequest,
};
use coxswain_proto::node::v1alpha1::InvolvedObject;
use oci_spec::runtime::Spec;
use tokio::sync::watch;
use tonic::Status;
use tonic::transport::Channel;

use super::apply::{ContainerEdits, apply_edits};
use super::checkpoint::{Checkpoint, ContainerAllocation};
use super::plan::{self, ResourceRequest};
use super::{DeviceManager, DeviceStage, Error};

impl DeviceManager {
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
        let requests = plan::plan(pod, container)?;
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
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            self.release(|c| {
                let Some(p) = c.pods.get_mut(&uid) else {
                    return false;
                };
                let renamed = p.namespace != namespace || p.name != name;
                p.namespace = namespace;
                p.name = name;
                renamed
            });
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
            plan::check_free(&state.checkpoint.holders(), ids, request.milli, uid)?;
            let pod = state.checkpoint.pods.entry(uid.to_string()).or_default();
            let list = pod.containers.entry(container.to_string()).or_default();
            list.retain(|a| a.resource != request.resource);
            list.push(ContainerAllocation {
                resource: request.resource.clone(),
                plugin_resource: request.plugin_resource.clone(),
                devices: plan::held(ids, request.milli),
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
            plan::free_devices(&state.checkpoint.holders(), &healthy, request.milli, uid)
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
            devices: plan::held(&ids, request.milli),
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
        if plan::extended_requests(container).is_empty() {
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

    fn pod_status_view(
        &self,
        pod: InvolvedObject,
        raw: watch::Receiver<Option<Vec<u8>>>,
    ) -> watch::Receiver<Option<Vec<u8>>> {
        let (out, view) = watch::channel(raw.borrow().clone());
        self.runtime.spawn(super::health_events::pod_status_view(
            self.clone(),
            pod,
            raw,
            out,
        ));
        view
    }
}
