//! Which devices a container gets: the extended resources it requests, matched to
//! the entries of the pod's `coxswain.dev/gpu-devices` annotation, and the rule that
//! a device is never held by two pods beyond its whole (1000 thousandths).
//!
//! Whole GPUs (`nvidia.com/gpu: N`): app containers take the annotation's whole
//! entries in order, N each; an init container (they run one at a time, before the
//! apps) takes from the start. A share (`coxswain.dev/gpu-milli`): the scheduler
//! gives a pod one share, so every container asking for one gets the annotation's
//! share entry, allocated from the `nvidia.com/gpu` plugin by its device ID.

use std::collections::BTreeMap;

use coxswain_api::ParsedQuantity;
use coxswain_api::k8s::{Container, Pod};
use coxswain_api::resources::{GPU_MILLI, NVIDIA_GPU};

use super::Error;
use super::annotation::{self, AnnotatedDevice, GPU_DEVICES_ANNOTATION};
use super::checkpoint::HeldDevice;

/// Whether `name` is an extended resource (domain-qualified, outside `kubernetes.io`).
pub fn is_extended(name: &str) -> bool {
    match name.split_once('/') {
        Some((domain, _)) => domain != "kubernetes.io" && !domain.ends_with(".kubernetes.io"),
        None => false,
    }
}

/// The extended resources `c` requests, with their (whole) amounts: limits, or
/// requests where a resource has no limit.
pub fn extended_requests(c: &Container) -> BTreeMap<String, i64> {
    let mut wanted = BTreeMap::new();
    let Some(resources) = c.resources.as_ref() else {
        return wanted;
    };
    for map in [&resources.requests, &resources.limits]
        .into_iter()
        .flatten()
    {
        for (name, quantity) in map {
            if !is_extended(name) {
                continue;
            }
            let amount = ParsedQuantity::parse(&quantity.0)
                .map(|q| (q.millis() / 1000) as i64)
                .unwrap_or(0);
            if amount > 0 {
                wanted.insert(name.clone(), amount);
            } else {
                wanted.remove(name);
            }
        }
    }
    wanted
}

/// What one container needs of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    /// The resource the container requests.
    pub resource: String,
    /// The plugin's resource to ask (`nvidia.com/gpu` for GPU shares).
    pub plugin_resource: String,
    /// How many devices.
    pub count: usize,
    /// Thousandths held of each device (1000: whole devices).
    pub milli: u16,
    /// The devices the scheduler chose; `None` when the pod has no annotation.
    pub chosen: Option<Vec<String>>,
}

fn container_position(pod: &Pod, name: &str) -> Option<(bool, usize)> {
    let spec = pod.spec.as_ref()?;
    if let Some(i) = spec.containers.iter().position(|c| c.name == name) {
        return Some((false, i));
    }
    let init = spec.init_containers.as_ref()?;
    init.iter().position(|c| c.name == name).map(|i| (true, i))
}

/// The pod's annotated devices, if the scheduler recorded any.
pub fn annotated(pod: &Pod) -> Result<Option<Vec<AnnotatedDevice>>, Error> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(GPU_DEVICES_ANNOTATION))
        .map(|value| annotation::parse(value))
        .transpose()
}

/// What `container` of `pod` needs, resource by resource.
pub fn plan(pod: &Pod, container: &Container) -> Result<Vec<ResourceRequest>, Error> {
    let wanted = extended_requests(container);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let annotated = annotated(pod)?;
    let mut requests = Vec::new();
    for (resource, amount) in wanted {
        let request = match (resource.as_str(), annotated.as_deref()) {
            (NVIDIA_GPU, Some(entries)) => {
                let whole: Vec<&AnnotatedDevice> =
                    entries.iter().filter(|d| !d.is_share()).collect();
                let offset = match container_position(pod, &container.name) {
                    Some((false, i)) => pod
                        .spec
                        .iter()
                        .flat_map(|s| s.containers.iter().take(i))
                        .map(|c| extended_requests(c).get(NVIDIA_GPU).copied().unwrap_or(0))
                        .sum::<i64>() as usize,
                    _ => 0,
                };
                let count = amount as usize;
                let ids: Vec<String> = whole
                    .iter()
                    .skip(offset)
                    .take(count)
                    .map(|d| d.id.clone())
                    .collect();
                if ids.len() < count {
                    return Err(Error::Annotation(format!(
                        "lists {} whole device(s) but container {:?} needs {count} from position {offset}",
                        whole.len(),
                        container.name
                    )));
                }
                ResourceRequest {
                    plugin_resource: resource.clone(),
                    resource,
                    count,
                    milli: 1000,
                    chosen: Some(ids),
                }
            }
            (GPU_MILLI, Some(entries)) => {
                let share = entries
                    .iter()
                    .find(|d| d.is_share())
                    .or(entries.first())
                    .ok_or_else(|| {
                        Error::Annotation(format!(
                            "lists no device but container {:?} requests {GPU_MILLI}",
                            container.name
                        ))
                    })?;
                ResourceRequest {
                    resource,
                    plugin_resource: NVIDIA_GPU.to_string(),
                    count: 1,
                    milli: share.milli,
                    chosen: Some(vec![share.id.clone()]),
                }
            }
            (GPU_MILLI, None) => ResourceRequest {
                resource,
                plugin_resource: NVIDIA_GPU.to_string(),
                count: 1,
                milli: amount.clamp(1, 1000) as u16,
                chosen: None,
            },
            _ => ResourceRequest {
                plugin_resource: resource.clone(),
                resource,
                count: amount as usize,
                milli: 1000,
                chosen: None,
            },
        };
        requests.push(request);
    }
    Ok(requests)
}

/// Thousandths of device `id` held by pods other than `uid`.
pub fn held_by_others(
    holders: &BTreeMap<String, BTreeMap<String, u16>>,
    id: &str,
    uid: &str,
) -> (u32, Option<String>) {
    let Some(pods) = holders.get(id) else {
        return (0, None);
    };
    let mut total = 0u32;
    let mut first = None;
    for (pod, milli) in pods.iter().filter(|(pod, _)| pod.as_str() != uid) {
        total += u32::from(*milli);
        first.get_or_insert_with(|| pod.clone());
    }
    (total, first)
}

/// Checks that `uid` may take `milli` of each of `ids`; errors name the holder.
pub fn check_free(
    holders: &BTreeMap<String, BTreeMap<String, u16>>,
    ids: &[String],
    milli: u16,
    uid: &str,
) -> Result<(), Error> {
    for id in ids {
        let (held, holder) = held_by_others(holders, id, uid);
        if held + u32::from(milli) > 1000 {
            return Err(Error::AlreadyAllocated {
                id: id.clone(),
                pod: holder.unwrap_or_default(),
            });
        }
    }
    Ok(())
}

/// The devices among `healthy` that `uid` could take `milli` of.
pub fn free_devices(
    holders: &BTreeMap<String, BTreeMap<String, u16>>,
    healthy: &[String],
    milli: u16,
    uid: &str,
) -> Vec<String> {
    healthy
        .iter()
        .filter(|id| held_by_others(holders, id, uid).0 + u32::from(milli) <= 1000)
        .cloned()
        .collect()
}

/// The held-device records of `ids`.
pub fn held(ids: &[String], milli: u16) -> Vec<HeldDevice> {
    ids.iter()
        .map(|id| HeldDevice {
            id: id.clone(),
            milli,
        })
        .collect()
}
