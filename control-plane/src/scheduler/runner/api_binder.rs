//! [`ApiBinder`]: the Bind step over the API. A bind is one compare-and-swap `PUT` of the
//! pod as the scheduler last saw it, with `spec.nodeName` and the GPU-devices annotation
//! set: a pod changed meanwhile answers 409 and comes back as [`BindError::Conflict`], and
//! the scheduler retries it after back-off against the newer version. An eviction deletes
//! the victim.
//!
//! The API server accepts `spec.nodeName` on a `PUT` while it is empty (it does not yet
//! enforce Kubernetes' pod-spec immutability), so no `pods/binding` subresource is needed.

use std::sync::Arc;

use coxswain_api::k8s::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use tokio::runtime::Handle;

use super::super::binder::{BindError, Binder, Binding, GPU_DEVICES_ANNOTATION, format_devices};
use super::super::model::PodKey;
use super::PodCache;

/// A hook run with each binding right before it is written (see
/// [`super::RunnerConfig::before_bind`]).
pub type BeforeBind = Arc<dyn Fn(&Binding) + Send + Sync>;

/// Writes bindings and evictions through a [`kube::Client`].
///
/// Its methods block on `handle`: call them from a thread that is not a tokio worker
/// (the runner's scheduling thread).
pub struct ApiBinder {
    client: kube::Client,
    handle: Handle,
    pods: PodCache,
    before_bind: Option<BeforeBind>,
    volume_timeout: std::time::Duration,
}

impl ApiBinder {
    /// The same binder, waiting at most `timeout` for a pod's claims to bind.
    pub(crate) fn with_volume_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.volume_timeout = timeout;
        self
    }

    /// A binder writing through `client`, blocking on `handle`, over the pods in `pods`.
    pub(crate) fn new(
        client: kube::Client,
        handle: Handle,
        pods: PodCache,
        before_bind: Option<BeforeBind>,
    ) -> Self {
        ApiBinder {
            client,
            handle,
            pods,
            before_bind,
            volume_timeout: super::volumes::DEFAULT_VOLUME_BIND_TIMEOUT,
        }
    }

    fn api(&self, key: &str) -> Result<(Api<Pod>, String), BindError> {
        let (ns, name) = key
            .split_once('/')
            .ok_or_else(|| BindError::NotFound(key.to_string()))?;
        Ok((Api::namespaced(self.client.clone(), ns), name.to_string()))
    }
}

fn store_error(pod: &str, error: kube::Error) -> BindError {
    match error {
        kube::Error::Api(s) if s.code == 409 => BindError::Conflict(pod.to_string()),
        kube::Error::Api(s) if s.code == 404 => BindError::NotFound(pod.to_string()),
        other => BindError::Store {
            pod: pod.to_string(),
            message: other.to_string(),
        },
    }
}

/// `pod` bound to `binding`'s node with its devices.
fn bound(mut pod: Pod, binding: &Binding) -> Result<Pod, BindError> {
    let spec = pod
        .spec
        .as_mut()
        .ok_or_else(|| BindError::NotFound(binding.pod.to_string()))?;
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
        // Bound by someone else since the scheduler looked: as a changed pod.
        return Err(BindError::Conflict(binding.pod.to_string()));
    }
    spec.node_name = Some(binding.node.clone());
    let annotations = pod
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    if binding.devices.is_empty() {
        annotations.remove(GPU_DEVICES_ANNOTATION);
    } else {
        annotations.insert(
            GPU_DEVICES_ANNOTATION.to_string(),
            format_devices(&binding.devices),
        );
    }
    Ok(pod)
}

impl Binder for ApiBinder {
    fn bind(&self, binding: &Binding) -> Result<(), BindError> {
        let seen = self
            .pods
            .get(&binding.pod)
            .ok_or_else(|| BindError::NotFound(binding.pod.to_string()))?;
        // PreBind: the pod's claims follow it to the node and bind first.
        self.handle.block_on(super::volumes::prebind(
            &self.client,
            &seen,
            &binding.node,
            self.volume_timeout,
        ))?;
        let pod = bound(seen, binding)?;
        if let Some(hook) = &self.before_bind {
            hook(binding);
        }
        let (api, name) = self.api(&binding.pod)?;
        // `replace` sends the resourceVersion the watch delivered: compare-and-swap.
        let written = self
            .handle
            .block_on(api.replace(&name, &PostParams::default(), &pod))
            .map_err(|e| store_error(&binding.pod, e))?;
        self.pods.put(binding.pod.to_string(), written);
        Ok(())
    }

    fn evict(&self, pod: &PodKey, reason: &str) -> Result<(), BindError> {
        let (api, name) = self.api(pod)?;
        tracing::info!(pod = %pod, reason, "evicting");
        match self
            .handle
            .block_on(api.delete(&name, &DeleteParams::default()))
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(store_error(pod, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::model::DeviceAlloc;

    #[test]
    fn binding_sets_node_and_annotation_and_refuses_a_bound_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "7"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        }))
        .unwrap();
        let binding = Binding {
            pod: "ns/p".into(),
            node: "n1".into(),
            devices: vec![DeviceAlloc {
                id: "GPU-a".into(),
                milli: 1000,
            }],
        };
        let out = bound(pod, &binding).unwrap();
        assert_eq!(out.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
        assert_eq!(out.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(
            out.metadata.annotations.as_ref().unwrap()[GPU_DEVICES_ANNOTATION],
            r#"["GPU-a"]"#
        );
        assert_eq!(
            bound(out, &binding),
            Err(BindError::Conflict("ns/p".into()))
        );
    }
}
