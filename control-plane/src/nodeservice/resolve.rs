//! Resolve: cluster DNS names for the agent's node-local resolver.
//!
//! - `<hostname>.<subdomain>.<ns>.svc.<domain>`: the IPs of the live pods in `<ns>` with that
//!   `spec.hostname` and `spec.subdomain` (a job's workers find each other this way);
//! - `<service>.<ns>.svc.<domain>`: a ClusterIP service's cluster IP, or for a headless
//!   service (clusterIP None) the IPs of the ready pods its selector matches (running ones too
//!   with `publishNotReadyAddresses`, or before the agent has reported readiness).
//!
//! Names are case-insensitive and may end with a dot. A name outside the cluster domain is
//! answered non-authoritatively with no addresses; one inside it that names nothing gets an
//! authoritative empty answer (NXDOMAIN).

use std::collections::BTreeSet;

use coxswain_proto::node::v1alpha1 as pb;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use tonic::Status;

use super::{NodeService, api_status};

/// Serves Resolve.
pub(crate) async fn resolve(
    service: &NodeService,
    request: pb::ResolveRequest,
) -> Result<pb::ResolveResponse, Status> {
    let name = request
        .name
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if name.is_empty() {
        return Err(Status::invalid_argument("name: required"));
    }
    let domain = service
        .config
        .cluster_domain
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let Some(local) = name.strip_suffix(&format!(".{domain}")) else {
        return Ok(pb::ResolveResponse {
            addresses: Vec::new(),
            authoritative: false,
        });
    };
    let labels: Vec<&str> = local.split('.').collect();
    let addresses = match labels.as_slice() {
        [hostname, subdomain, namespace, "svc"] => {
            pod_by_hostname(service, namespace, hostname, subdomain).await?
        }
        [service_name, namespace, "svc"] => by_service(service, namespace, service_name).await?,
        _ => BTreeSet::new(),
    };
    Ok(pb::ResolveResponse {
        addresses: addresses.into_iter().collect(),
        authoritative: true,
    })
}

async fn pod_by_hostname(
    service: &NodeService,
    namespace: &str,
    hostname: &str,
    subdomain: &str,
) -> Result<BTreeSet<String>, Status> {
    let pods: Api<Pod> = Api::namespaced(service.client.clone(), namespace);
    let list = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| api_status(&format!("listing pods in {namespace}"), e))?;
    Ok(list
        .items
        .iter()
        .filter(|p| {
            let spec = p.spec.as_ref();
            spec.and_then(|s| s.hostname.as_deref())
                .is_some_and(|h| h.eq_ignore_ascii_case(hostname))
                && spec
                    .and_then(|s| s.subdomain.as_deref())
                    .is_some_and(|s| s.eq_ignore_ascii_case(subdomain))
                && !is_terminated(p)
        })
        .filter_map(pod_ip)
        .collect())
}

async fn by_service(
    service: &NodeService,
    namespace: &str,
    name: &str,
) -> Result<BTreeSet<String>, Status> {
    let services: Api<Service> = Api::namespaced(service.client.clone(), namespace);
    let what = format!("service {namespace}/{name}");
    let Some(svc) = services
        .get_opt(name)
        .await
        .map_err(|e| api_status(&what, e))?
    else {
        return Ok(BTreeSet::new());
    };
    let Some(spec) = svc.spec.as_ref() else {
        return Ok(BTreeSet::new());
    };
    match spec.cluster_ip.as_deref() {
        Some("None") => {}
        Some(ip) if !ip.is_empty() => return Ok(BTreeSet::from([ip.to_string()])),
        _ => return Ok(BTreeSet::new()),
    }
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return Ok(BTreeSet::new());
    };
    let label_selector = selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(service.client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&label_selector))
        .await
        .map_err(|e| api_status(&format!("listing the pods of {what}"), e))?;
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    Ok(list
        .items
        .iter()
        .filter(|p| !is_terminated(p) && serves(p, publish_not_ready))
        .filter_map(pod_ip)
        .collect())
}

/// Whether a headless service's endpoint list includes the pod: ready, or running and either
/// published regardless of readiness or not yet judged ready or not.
fn serves(pod: &Pod, publish_not_ready: bool) -> bool {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
    match ready {
        Some(ready) if ready.status == "True" => true,
        Some(_) => publish_not_ready && running,
        None => running,
    }
}

fn is_terminated(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
}
