//! Kubernetes objects → the scheduler's model: what the API-server watch calls before
//! turning a watch event into a [`super::ClusterEvent`].
//!
//! GPUs are not taken from a node's `nvidia.com/gpu` count: the scheduler allocates
//! devices, which come from the node's device inventory (`DevicesChanged`).

use std::collections::BTreeMap;
use std::time::Duration;

use coxswain_api::coxswain::{DEFAULT_QUEUE, PodGroup, Queue};
use coxswain_api::k8s::{Node, Pod};
use coxswain_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use coxswain_api::quantity::parse_quantity;
use coxswain_api::resources::{CPU, GPU_MILLI, MEMORY, NVIDIA_GPU, PODS, is_gpu_resource};
use thiserror::Error;

use super::binder::parse_devices;
use super::model::{
    GangSpec, NodeInfo, PodInfo, QUEUE_LABEL, QueueInfo, Quota, Requirement, RequirementOp,
    Resources, Taint, TaintEffect, Toleration, TolerationOp,
};
use super::plugins::gpu::GPU_MODEL_ANNOTATION;

/// An object the scheduler cannot model; names the field.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConvertError {
    /// A required field is missing.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A field has a value the scheduler does not support or cannot parse.
    #[error("{field}: {message}")]
    Invalid {
        /// The field path.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn amount(field: &str, name: &str, q: &Quantity) -> Result<i64, ConvertError> {
    let p = parse_quantity(q).map_err(|e| invalid(format!("{field}[{name}]"), e.to_string()))?;
    let v = if name == CPU {
        p.millis()
    } else {
        p.ceil_units()
    };
    i64::try_from(v).map_err(|_| invalid(format!("{field}[{name}]"), "value out of range"))
}

/// Adds a resource list into `r` (cpu, memory, pods, extended; GPUs excluded).
fn add_list(
    r: &mut Resources,
    field: &str,
    list: &BTreeMap<String, Quantity>,
) -> Result<(), ConvertError> {
    for (name, q) in list {
        let v = amount(field, name, q)?;
        match name.as_str() {
            CPU => r.cpu_milli += v,
            MEMORY => r.memory += v,
            PODS => r.pods += v,
            n if is_gpu_resource(n) => {}
            n if n.contains('/') => {
                let cur = r.extended(n);
                r.set_extended(n, cur + v);
            }
            _ => {}
        }
    }
    Ok(())
}

fn effect(field: &str, value: Option<&str>) -> Result<Option<TaintEffect>, ConvertError> {
    match value {
        None | Some("") => Ok(None),
        Some("NoSchedule") => Ok(Some(TaintEffect::NoSchedule)),
        Some("PreferNoSchedule") => Ok(Some(TaintEffect::PreferNoSchedule)),
        Some("NoExecute") => Ok(Some(TaintEffect::NoExecute)),
        Some(other) => Err(invalid(field, format!("unknown taint effect {other}"))),
    }
}

/// A node's scheduling view (no GPUs: they come from its device inventory).
pub fn node_info(node: &Node) -> Result<NodeInfo, ConvertError> {
    let name = node
        .metadata
        .name
        .clone()
        .ok_or(ConvertError::Missing("metadata.name"))?;
    let mut allocatable = Resources::default();
    if let Some(list) = node.status.as_ref().and_then(|s| s.allocatable.as_ref()) {
        add_list(&mut allocatable, "status.allocatable", list)?;
    }
    let mut info = NodeInfo::new(name, allocatable, Vec::new());
    info.labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(spec) = &node.spec {
        info.unschedulable = spec.unschedulable.unwrap_or(false);
        for (i, t) in spec.taints.iter().flatten().enumerate() {
            let field = format!("spec.taints[{i}].effect");
            info.taints.push(Taint {
                key: t.key.clone(),
                value: t.value.clone().unwrap_or_default(),
                effect: effect(&field, Some(&t.effect))?
                    .ok_or_else(|| invalid(field, "must be set"))?,
            });
        }
    }
    Ok(info)
}

/// A pod's scheduling view; `seq` orders pods of equal priority (creation order).
pub fn pod_info(pod: &Pod, seq: u64) -> Result<PodInfo, ConvertError> {
    let meta = &pod.metadata;
    let name = meta
        .name
        .as_deref()
        .ok_or(ConvertError::Missing("metadata.name"))?;
    let ns = meta.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.as_ref().ok_or(ConvertError::Missing("spec"))?;
    let mut info = PodInfo::new(&format!("{ns}/{name}"), 0, 0, 0);
    info.seq = seq;
    info.claims = crate::nodeservice::pods::claim_references(pod)
        .into_iter()
        .collect();
    info.priority = spec.priority.unwrap_or(0);
    info.never_preempts = spec.preemption_policy.as_deref() == Some("Never");
    let (mut gpus, mut milli) = (0i64, 0i64);
    for (i, c) in spec.containers.iter().enumerate() {
        let field = format!("spec.containers[{i}].resources.requests");
        let res = c.resources.as_ref();
        let requests = res.and_then(|r| r.requests.as_ref());
        let limits = res.and_then(|r| r.limits.as_ref());
        if let Some(list) = requests {
            add_list(&mut info.requests, &field, list)?;
        }
        // Extended resources may be given as limits only (requests default to them).
        let gpu = |n: &str| {
            requests
                .and_then(|l| l.get(n))
                .or_else(|| limits.and_then(|l| l.get(n)))
        };
        if let Some(q) = gpu(NVIDIA_GPU) {
            gpus += amount(&field, NVIDIA_GPU, q)?;
        }
        if let Some(q) = gpu(GPU_MILLI) {
            milli += amount(&field, GPU_MILLI, q)?;
        }
    }
    info.gpus = u16::try_from(gpus).map_err(|_| invalid(NVIDIA_GPU, "too many GPUs"))?;
    info.gpu_milli =
        u16::try_from(milli).map_err(|_| invalid(GPU_MILLI, "must be at most 1000"))?;
    let annotations = meta.annotations.as_ref();
    if let Some(models) = annotations.and_then(|a| a.get(GPU_MODEL_ANNOTATION)) {
        info.gpu_models = models
            .split('|')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect();
    }
    info.node_selector = spec.node_selector.clone().unwrap_or_default();
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or_default();
    for (t, term) in terms.iter().enumerate() {
        let mut reqs = Vec::new();
        for (e, expr) in term.match_expressions.iter().flatten().enumerate() {
            let Some(op) = RequirementOp::parse(&expr.operator) else {
                let field = format!(
                    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{t}].matchExpressions[{e}].operator"
                );
                let other = &expr.operator;
                return Err(invalid(field, format!("operator {other} is not supported")));
            };
            reqs.push(Requirement {
                key: expr.key.clone(),
                op,
                values: expr.values.clone().unwrap_or_default(),
            });
        }
        info.affinity.push(reqs);
    }
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        let op = match t.operator.as_deref() {
            Some("Exists") => TolerationOp::Exists,
            None | Some("Equal") => TolerationOp::Equal,
            Some(other) => {
                return Err(invalid(
                    format!("spec.tolerations[{i}].operator"),
                    format!("unknown operator {other}"),
                ));
            }
        };
        info.tolerations.push(Toleration {
            key: t.key.clone().unwrap_or_default(),
            op,
            value: t.value.clone().unwrap_or_default(),
            effect: effect(
                &format!("spec.tolerations[{i}].effect"),
                t.effect.as_deref(),
            )?,
        });
    }
    if let Some(group) = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(PodGroup::POD_LABEL))
    {
        info.group = Some(format!("{ns}/{group}").into());
    }
    info.queue = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(QUEUE_LABEL))
        .filter(|q| !q.is_empty())
        .cloned();
    info.node = spec.node_name.clone().filter(|n| !n.is_empty());
    if info.node.is_some()
        && let Some(value) = annotations.and_then(|a| a.get(super::GPU_DEVICES_ANNOTATION))
    {
        info.devices =
            parse_devices(value).map_err(|e| invalid("metadata.annotations", e.to_string()))?;
    }
    Ok(info)
}

/// A PodGroup's gang spec; `seq` orders gangs (creation order).
pub fn gang_spec(group: &PodGroup, seq: u64) -> Result<GangSpec, ConvertError> {
    let name = group
        .metadata
        .name
        .as_deref()
        .ok_or(ConvertError::Missing("metadata.name"))?;
    let ns = group.metadata.namespace.as_deref().unwrap_or("default");
    let min = u32::try_from(group.spec.min_member.max(1)).unwrap_or(1);
    let timeout = group.spec.schedule_timeout_seconds.unwrap_or(60).max(1) as u64;
    Ok(GangSpec {
        key: format!("{ns}/{name}").into(),
        min_member: min,
        timeout: Duration::from_secs(timeout),
        topology: group.spec.topology.clone(),
        seq,
        queue: Some(
            group
                .spec
                .queue
                .clone()
                .filter(|q| !q.is_empty())
                .unwrap_or_else(|| DEFAULT_QUEUE.to_string()),
        ),
    })
}

/// A Queue's scheduling view; quantities in the scheduler's units (see [`QueueInfo`]).
pub fn queue_info(queue: &Queue) -> Result<QueueInfo, ConvertError> {
    let name = queue
        .metadata
        .name
        .clone()
        .ok_or(ConvertError::Missing("metadata.name"))?;
    let mut quotas = std::collections::BTreeMap::new();
    for (resource, q) in &queue.spec.quotas {
        let field = format!("spec.quotas[{resource}]");
        let units = |field: &str, q: &Quantity| -> Result<i64, ConvertError> {
            let p = parse_quantity(q).map_err(|e| invalid(field, e.to_string()))?;
            let v = if resource == CPU {
                p.millis()
            } else {
                p.ceil_units()
            };
            i64::try_from(v).map_err(|_| invalid(field, "value out of range"))
        };
        let nominal = units(&format!("{field}.nominal"), &q.nominal)?;
        let borrowing_limit = match &q.borrowing_limit {
            Some(l) => Some(units(&format!("{field}.borrowingLimit"), l)?),
            None => None,
        };
        quotas.insert(
            resource.clone(),
            Quota {
                nominal,
                borrowing_limit,
            },
        );
    }
    Ok(QueueInfo {
        name,
        priority: queue.spec.priority.unwrap_or(0),
        weight: queue.spec.weight.unwrap_or(1),
        cohort: queue.spec.cohort.clone().filter(|c| !c.is_empty()),
        quotas,
    })
}

#[cfg(test)]
mod tests;
