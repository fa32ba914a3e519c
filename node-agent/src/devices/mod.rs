//! Devices: the agent's side of the Kubernetes device-plugin API `v1beta1`.
//!
//! [`DeviceManager`] serves `v1beta1.Registration` on `<plugin-dir>/kubelet.sock`,
//! dials each registered plugin back on its endpoint, keeps its `ListAndWatch`
//! stream open to track every device's health, reads coxswain's optional
//! `v1alpha1.DeviceAttributes`, and publishes a [`DeviceInventory`] (ResourceSlices,
//! capacity, allocatable) through a `tokio::sync::watch`.
//!
//! At container start the pod worker calls the [`DeviceStage`]: the manager asks the
//! plugin to `Allocate` exactly the devices the scheduler recorded in the pod's
//! `coxswain.dev/gpu-devices` annotation ([`annotation`]), remembers them in a
//! checkpoint ([`checkpoint`]) so a restarted agent never hands a device out twice,
//! and applies the plugin's answer (device nodes with device-cgroup rules, env,
//! mounts, annotations, CDI devices) to the OCI spec ([`apply`], [`cdi`]).

mod allocate;
pub mod annotation;
pub mod apply;
pub mod cdi;
pub mod checkpoint;
mod error;
pub mod health_events;
mod manager;
pub mod plan;
pub mod pod_health;
mod registration;
mod registration_socket;
mod session;
pub mod slices;
mod state;
mod unix;

use std::collections::{BTreeMap, BTreeSet};

use coxswain_api::k8s::{Container, Pod, ResourceSlice};
use coxswain_proto::node::v1alpha1::InvolvedObject;
use oci_spec::runtime::Spec;
use tokio::sync::watch;

pub use apply::{ContainerEdits, DeviceNodeEdit, HostDeviceNodes, MountEdit, NodeStat};
pub use error::Error;
pub use health_events::{EventKind, EventSink, node_object, pod_object};
pub use manager::{DeviceManager, DeviceManagerConfig};
pub use state::DeviceHealth;

/// What the node reports to the control plane about its devices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInventory {
    /// One `resource.k8s.io/v1` ResourceSlice per registered resource with devices.
    pub resource_slices: Vec<ResourceSlice>,
    /// Devices per extended resource (e.g. `nvidia.com/gpu`), healthy or not.
    pub capacity: BTreeMap<String, i64>,
    /// Healthy devices per extended resource.
    pub allocatable: BTreeMap<String, i64>,
}

/// The device step of container start, as the pod worker sees it.
///
/// Implementations block (they call the plugin over gRPC): the worker runs on a
/// dedicated thread or through `spawn_blocking`, never on a shared async worker.
pub trait DeviceStage: Send + Sync {
    /// Allocates (or reuses the allocation of) the devices `container` of `pod`
    /// requests and applies them to `spec`. Containers requesting no extended
    /// resource leave `spec` unchanged.
    fn prepare_container(
        &self,
        pod: &Pod,
        container: &Container,
        spec: &mut Spec,
    ) -> Result<(), Error>;

    /// Releases every device held by the pod with this uid.
    fn release_pod(&self, uid: &str);

    /// Releases the devices of every pod whose uid is not in `live`.
    fn retain_pods(&self, live: &BTreeSet<String>);

    /// The pod's status as the agent reports it, from the status its worker
    /// publishes (`raw`, JSON): a device manager writes the pod's device health
    /// in (condition `coxswain.dev/DevicesHealthy`, `allocatedResourcesStatus`).
    /// Must be called inside a tokio runtime.
    fn pod_status_view(
        &self,
        _pod: InvolvedObject,
        raw: watch::Receiver<Option<Vec<u8>>>,
    ) -> watch::Receiver<Option<Vec<u8>>> {
        raw
    }
}

/// The device stage of an agent without a device manager: refuses containers that
/// request extended resources (GPUs), with a reason saying why.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDevices;

impl DeviceStage for NoDevices {
    fn prepare_container(
        &self,
        _pod: &Pod,
        container: &Container,
        _spec: &mut Spec,
    ) -> Result<(), Error> {
        match plan::extended_requests(container).into_iter().next() {
            Some((resource, _)) => Err(Error::NoDeviceManager {
                container: container.name.clone(),
                resource,
            }),
            None => Ok(()),
        }
    }

    fn release_pod(&self, _uid: &str) {}

    fn retain_pods(&self, _live: &BTreeSet<String>) {}
}

#[cfg(test)]
mod tests;
