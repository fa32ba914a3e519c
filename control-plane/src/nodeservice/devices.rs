//! ReportDevices: the node's device inventory — ResourceSlices owned by the Node (one per
//! device pool) and the extended-resource counts (`nvidia.com/gpu`) in its status.
//!
//! A report replaces the previous one: slices of the node it does not list are deleted, and
//! extended resources it does not mention leave the Node's capacity and allocatable.

use std::collections::{BTreeMap, BTreeSet};

use coxswain_proto::node::v1alpha1 as pb;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::resource::v1::ResourceSlice;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use tonic::Status;

use super::cas::{Part, modify};
use super::lease::owner_reference;
use super::{
    CONFLICT_RETRIES, NodeService, api_status, is_conflict, is_not_found, require_node_name,
};

/// Whether `name` is an extended resource (a domain-prefixed name outside
/// `kubernetes.io`), the kind a device report owns.
pub fn is_extended_resource(name: &str) -> bool {
    match name.split_once('/') {
        Some((domain, _)) => {
            domain != "kubernetes.io"
                && !domain.ends_with(".kubernetes.io")
                && !name.starts_with("requests.")
        }
        None => false,
    }
}

/// Serves ReportDevices.
pub(crate) async fn report(
    service: &NodeService,
    request: pb::ReportDevicesRequest,
) -> Result<pb::ReportDevicesResponse, Status> {
    require_node_name(&request.node_name)?;
    let node_name = request.node_name.as_str();
    let nodes: Api<Node> = Api::all(service.client.clone());
    let what = format!("node {node_name}");
    let node = nodes
        .get_opt(node_name)
        .await
        .map_err(|e| api_status(&what, e))?
        .ok_or_else(|| {
            Status::not_found(format!("{what} is not registered (call Register first)"))
        })?;
    for (resource, _) in request.capacity.iter().chain(&request.allocatable) {
        if !is_extended_resource(resource) {
            return Err(Status::invalid_argument(format!(
                "capacity: {resource:?} is not an extended resource (domain/name outside \
                 kubernetes.io)"
            )));
        }
    }
    let mut slices = Vec::with_capacity(request.resource_slices.len());
    for (i, raw) in request.resource_slices.iter().enumerate() {
        let mut slice: ResourceSlice = serde_json::from_slice(raw).map_err(|e| {
            Status::invalid_argument(format!(
                "resource_slices[{i}]: not a resource.k8s.io/v1 ResourceSlice in JSON: {e}"
            ))
        })?;
        if slice.metadata.name.as_deref().is_none_or(str::is_empty) {
            return Err(Status::invalid_argument(format!(
                "resource_slices[{i}].metadata.name: required"
            )));
        }
        slice.spec.node_name = Some(node_name.to_string());
        slice.spec.all_nodes = None;
        slice.spec.node_selector = None;
        slice.metadata.owner_references = owner_reference(&node).map(|o| vec![o]);
        slices.push(slice);
    }
    write_slices(service, node_name, slices).await?;
    write_extended_resources(&nodes, node_name, &request.capacity, &request.allocatable)
        .await
        .map_err(|e| api_status(&what, e))?;
    Ok(pb::ReportDevicesResponse {})
}

/// Creates or replaces `slices` and deletes the node's other slices.
async fn write_slices(
    service: &NodeService,
    node_name: &str,
    slices: Vec<ResourceSlice>,
) -> Result<(), Status> {
    let api: Api<ResourceSlice> = Api::all(service.client.clone());
    let pp = PostParams::default();
    let mut listed = BTreeSet::new();
    for slice in slices {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let what = format!("resourceslice {name}");
        listed.insert(name.clone());
        let mut attempt = 0;
        loop {
            let result = match api.get_opt(&name).await.map_err(|e| api_status(&what, e))? {
                None => api.create(&pp, &slice).await,
                Some(existing) => {
                    let owner = existing.spec.node_name.as_deref();
                    if owner.is_some_and(|o| o != node_name) {
                        return Err(Status::failed_precondition(format!(
                            "{what} belongs to node {}, not {node_name}",
                            owner.unwrap_or_default()
                        )));
                    }
                    let mut replacement = slice.clone();
                    replacement.metadata.resource_version = existing.metadata.resource_version;
                    api.replace(&name, &pp, &replacement).await
                }
            };
            match result {
                Ok(_) => break,
                Err(e) if is_conflict(&e) && attempt < CONFLICT_RETRIES => attempt += 1,
                Err(e) => return Err(api_status(&what, e)),
            }
        }
    }
    let all = api
        .list(&ListParams::default())
        .await
        .map_err(|e| api_status("listing resourceslices", e))?;
    for stale in all.items.iter().filter(|s| {
        s.spec.node_name.as_deref() == Some(node_name)
            && !listed.contains(s.metadata.name.as_deref().unwrap_or_default())
    }) {
        let name = stale.metadata.name.as_deref().unwrap_or_default();
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(api_status(&format!("resourceslice {name}"), e)),
        }
    }
    Ok(())
}

/// Sets the node's extended resources to exactly the reported ones.
async fn write_extended_resources(
    nodes: &Api<Node>,
    node_name: &str,
    capacity: &std::collections::HashMap<String, i64>,
    allocatable: &std::collections::HashMap<String, i64>,
) -> Result<(), kube::Error> {
    modify(nodes, node_name, Part::Status, |node| {
        let status = node.status.get_or_insert_with(Default::default);
        let a = replace_extended(&mut status.capacity, capacity);
        let b = replace_extended(&mut status.allocatable, allocatable);
        a | b
    })
    .await?;
    Ok(())
}

/// Replaces the extended resources in `counts` with `reported`; true when that changed them.
fn replace_extended(
    counts: &mut Option<BTreeMap<String, Quantity>>,
    reported: &std::collections::HashMap<String, i64>,
) -> bool {
    let counts = counts.get_or_insert_with(BTreeMap::new);
    let before = counts.clone();
    counts.retain(|name, _| !is_extended_resource(name));
    for (name, count) in reported {
        counts.insert(name.clone(), Quantity(count.to_string()));
    }
    *counts != before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_resources_are_domain_prefixed_outside_kubernetes_io() {
        assert!(is_extended_resource("nvidia.com/gpu"));
        assert!(is_extended_resource("example.com/foo"));
        assert!(!is_extended_resource("cpu"));
        assert!(!is_extended_resource("hugepages-2Mi"));
        assert!(!is_extended_resource("kubernetes.io/batteries"));
        assert!(!is_extended_resource("node.kubernetes.io/x"));
    }
}
