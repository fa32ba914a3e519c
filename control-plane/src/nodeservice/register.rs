//! Register: creates or updates the agent's Node, assigns its pod CIDR and renews its lease.
//!
//! An existing Node keeps what an operator set on it (spec: unschedulable, taints, its pod
//! CIDR; labels and annotations the agent did not send); its status becomes the agent's, with
//! extended resources the agent has reported through ReportDevices kept until the next report.
//!
//! Pod CIDRs derive from the Nodes in the API: a node gets the lowest `/node_cidr_prefix` range
//! of the cluster CIDR no other Node holds, so allocation survives restarts and a deleted
//! Node's range is free again. Allocation runs under the service's lock, and the Node write is
//! a compare-and-swap, so concurrent registrations never receive overlapping ranges.

use std::collections::BTreeMap;

use coxswain_proto::node::v1alpha1 as pb;
use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};
use tonic::Status;

use super::cidr::{Ipv4Cidr, lowest_free};
use super::lifecycle::{REASON_AGENT_READY, set_node_condition};
use super::{CONFLICT_RETRIES, NodeService, api_status, is_conflict, lease};

/// Serves Register.
pub(crate) async fn register(
    service: &NodeService,
    request: pb::RegisterRequest,
) -> Result<pb::RegisterResponse, Status> {
    let mut node: Node = serde_json::from_slice(&request.node)
        .map_err(|e| Status::invalid_argument(format!("node: not a core/v1 Node in JSON: {e}")))?;
    let name = node
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Status::invalid_argument("node.metadata.name: required"))?;
    set_node_condition(
        node.status
            .get_or_insert_with(NodeStatus::default)
            .conditions
            .get_or_insert_with(Vec::new),
        "True",
        REASON_AGENT_READY,
        "coxswain agent is posting ready status",
        Timestamp::now(),
    );
    // The pod CIDR is the control plane's to assign.
    if let Some(spec) = node.spec.as_mut() {
        spec.pod_cidr = None;
        spec.pod_cidrs = None;
    }
    let what = format!("node {name}");
    let stored = upsert(service, &name, node)
        .await
        .map_err(|e| api_status(&what, e))?;
    let stored = assign_pod_cidr(service, &name, stored).await?;
    lease::renew_lease(service, &stored).await?;
    let encoded = serde_json::to_vec(&stored)
        .map_err(|e| Status::internal(format!("encoding node {name}: {e}")))?;
    Ok(pb::RegisterResponse {
        node: encoded,
        cluster_domain: service.config.cluster_domain.clone(),
        lease_duration_seconds: i32::try_from(service.config.renew_interval().as_secs())
            .unwrap_or(i32::MAX),
    })
}

/// Creates the Node, or merges the agent's view into the stored one.
async fn upsert(service: &NodeService, name: &str, agent: Node) -> Result<Node, kube::Error> {
    let nodes: Api<Node> = Api::all(service.client.clone());
    let pp = PostParams::default();
    let mut attempt = 0;
    loop {
        let result = match nodes.get_opt(name).await? {
            None => nodes.create(&pp, &agent).await,
            Some(existing) => update(&nodes, existing, &agent).await,
        };
        match result {
            Ok(node) => return Ok(node),
            Err(e) if is_conflict(&e) && attempt < CONFLICT_RETRIES => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

async fn update(nodes: &Api<Node>, existing: Node, agent: &Node) -> Result<Node, kube::Error> {
    let name = existing.metadata.name.clone().unwrap_or_default();
    let pp = PostParams::default();
    let mut merged = existing.clone();
    merge_map(&mut merged.metadata.labels, &agent.metadata.labels);
    merge_map(
        &mut merged.metadata.annotations,
        &agent.metadata.annotations,
    );
    let spec = merged.spec.get_or_insert_with(NodeSpec::default);
    if spec.provider_id.is_none() {
        spec.provider_id = agent.spec.as_ref().and_then(|s| s.provider_id.clone());
    }
    let mut written = if merged.metadata != existing.metadata || merged.spec != existing.spec {
        nodes.replace(&name, &pp, &merged).await?
    } else {
        existing
    };
    let mut status = agent.status.clone().unwrap_or_default();
    if let Some(old) = written.status.as_ref() {
        keep_extended(&mut status.capacity, &old.capacity);
        keep_extended(&mut status.allocatable, &old.allocatable);
    }
    written.status = Some(status);
    nodes.replace_status(&name, &pp, &written).await
}

fn merge_map(into: &mut Option<BTreeMap<String, String>>, from: &Option<BTreeMap<String, String>>) {
    if let Some(from) = from {
        into.get_or_insert_with(BTreeMap::new)
            .extend(from.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

/// Keeps the extended resources of `old` that `new` does not mention.
fn keep_extended(
    new: &mut Option<BTreeMap<String, Quantity>>,
    old: &Option<BTreeMap<String, Quantity>>,
) {
    let Some(old) = old else { return };
    let new = new.get_or_insert_with(BTreeMap::new);
    for (resource, quantity) in old {
        if super::devices::is_extended_resource(resource) && !new.contains_key(resource) {
            new.insert(resource.clone(), quantity.clone());
        }
    }
}

/// Gives `node` the lowest free pod CIDR unless it has one.
async fn assign_pod_cidr(service: &NodeService, name: &str, node: Node) -> Result<Node, Status> {
    if has_pod_cidr(&node) {
        return Ok(node);
    }
    let config = &service.config;
    let nodes: Api<Node> = Api::all(service.client.clone());
    let what = format!("node {name}");
    let _allocating = service.cidr_lock.lock().await;
    let mut attempt = 0;
    loop {
        let all = nodes
            .list(&ListParams::default())
            .await
            .map_err(|e| api_status("listing nodes", e))?;
        let Some(mut me) = all
            .items
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
            .cloned()
        else {
            return Err(Status::not_found(format!(
                "{what}: deleted while registering"
            )));
        };
        if has_pod_cidr(&me) {
            return Ok(me);
        }
        let used: Vec<Ipv4Cidr> = all
            .items
            .iter()
            .filter(|n| n.metadata.name.as_deref() != Some(name))
            .flat_map(pod_cidrs)
            .collect();
        let cidr =
            lowest_free(&config.cluster_cidr, config.node_cidr_prefix, &used).ok_or_else(|| {
                Status::resource_exhausted(format!(
                    "{what}: no free /{} left in the cluster CIDR {} ({} nodes hold ranges)",
                    config.node_cidr_prefix,
                    config.cluster_cidr,
                    used.len()
                ))
            })?;
        let spec = me.spec.get_or_insert_with(NodeSpec::default);
        spec.pod_cidr = Some(cidr.to_string());
        spec.pod_cidrs = Some(vec![cidr.to_string()]);
        match nodes.replace(name, &PostParams::default(), &me).await {
            Ok(node) => {
                tracing::info!(node = name, %cidr, "assigned pod CIDR");
                return Ok(node);
            }
            Err(e) if is_conflict(&e) && attempt < CONFLICT_RETRIES => attempt += 1,
            Err(e) => return Err(api_status(&what, e)),
        }
    }
}

fn has_pod_cidr(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty())
}

/// The IPv4 ranges a node holds (`spec.podCIDR` and `spec.podCIDRs`).
pub(crate) fn pod_cidrs(node: &Node) -> Vec<Ipv4Cidr> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    spec.pod_cidr
        .iter()
        .chain(spec.pod_cidrs.iter().flatten())
        .filter_map(|c| c.parse().ok())
        .collect()
}
