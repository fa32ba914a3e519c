//! Node leases: `coordination.k8s.io/v1` Leases named after each node in namespace
//! `kube-node-lease`, renewed by the agent through RenewLease; the [`super::lifecycle`] loop
//! reads them to tell live nodes from lost ones.

use coxswain_proto::node::v1alpha1 as pb;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use tonic::Status;

use super::cas::{Part, modify};
use super::{NodeService, api_status, is_conflict, lifecycle, require_node_name};

/// The namespace node leases live in.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Serves RenewLease: renews the lease, and marks the node Ready again if the lifecycle loop
/// had given up on it.
pub(crate) async fn renew(
    service: &NodeService,
    request: pb::RenewLeaseRequest,
) -> Result<pb::RenewLeaseResponse, Status> {
    require_node_name(&request.node_name)?;
    let nodes: Api<Node> = Api::all(service.client.clone());
    let what = format!("node {}", request.node_name);
    let Some(node) = nodes
        .get_opt(&request.node_name)
        .await
        .map_err(|e| api_status(&what, e))?
    else {
        return Ok(pb::RenewLeaseResponse { registered: false });
    };
    renew_lease(service, &node).await?;
    lifecycle::mark_ready(&service.client, &request.node_name)
        .await
        .map_err(|e| api_status(&what, e))?;
    Ok(pb::RenewLeaseResponse { registered: true })
}

/// Creates `node`'s lease or sets its renew time to now.
pub(crate) async fn renew_lease(service: &NodeService, node: &Node) -> Result<(), Status> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let what = format!("lease {LEASE_NAMESPACE}/{name}");
    let leases: Api<Lease> = Api::namespaced(service.client.clone(), LEASE_NAMESPACE);
    let duration = i32::try_from(service.config.lease_grace.as_secs()).unwrap_or(i32::MAX);
    let renewed = modify(&leases, &name, Part::Object, |lease| {
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        spec.holder_identity = Some(name.clone());
        spec.lease_duration_seconds = Some(duration);
        true
    })
    .await
    .map_err(|e| api_status(&what, e))?;
    if renewed.is_some() {
        return Ok(());
    }
    ensure_namespace(&service.client).await?;
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(LEASE_NAMESPACE.to_string()),
            owner_references: owner_reference(node).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.clone()),
            lease_duration_seconds: Some(duration),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..LeaseSpec::default()
        }),
    };
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        // Another registration of the same node created it first: it is fresh.
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(api_status(&what, e)),
    }
}

/// Creates namespace `kube-node-lease` when it is missing.
async fn ensure_namespace(client: &kube::Client) -> Result<(), Status> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(LEASE_NAMESPACE.to_string()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(api_status(&format!("namespace {LEASE_NAMESPACE}"), e)),
    }
}

/// An owner reference to `node`, so its lease and slices go with it.
pub(crate) fn owner_reference(node: &Node) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "v1".to_string(),
        kind: "Node".to_string(),
        name: node.metadata.name.clone()?,
        uid: node.metadata.uid.clone()?,
        ..OwnerReference::default()
    })
}
