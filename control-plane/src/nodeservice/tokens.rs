//! ServiceAccountToken: the token of a projected `serviceAccountToken` volume, for a pod
//! bound to the calling node — what a kubelet gets from the TokenRequest API with the pod
//! as the bound object. The token is for the pod's service account and bound to the pod
//! ([`PodBinding`]), so it stops authenticating once the pod is deleted.

use coxswain_proto::node::v1alpha1 as pb;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::Api;
use tonic::Status;

use super::pod_status::{check_owner, require};
use super::{NodeService, api_status, require_node_name};
use crate::apiserver::auth::service_accounts::{BoundObject, PodBinding};
use crate::apiserver::service_account::DEFAULT_ACCOUNT;

/// Serves ServiceAccountToken.
pub(crate) async fn issue(
    service: &NodeService,
    request: pb::ServiceAccountTokenRequest,
) -> Result<pb::ServiceAccountTokenResponse, Status> {
    require_node_name(&request.node_name)?;
    require(&request.namespace, "namespace")?;
    require(&request.pod_name, "pod_name")?;
    require(&request.pod_uid, "pod_uid")?;
    let Some(signer) = service.service_accounts.as_ref() else {
        return Err(Status::failed_precondition(
            "this control plane issues no service-account tokens (it serves no TLS \
             listener: start cox server with --secure-listen)",
        ));
    };
    let what = format!("pod {}/{}", request.namespace, request.pod_name);
    let pods: Api<Pod> = Api::namespaced(service.client.clone(), &request.namespace);
    let pod = pods
        .get_opt(&request.pod_name)
        .await
        .map_err(|e| api_status(&what, e))?
        .ok_or_else(|| Status::not_found(format!("{what} not found")))?;
    check_owner(&pod, &what, &request.node_name, &request.pod_uid)?;
    let account_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_ACCOUNT.to_string());
    let accounts: Api<ServiceAccount> = Api::namespaced(service.client.clone(), &request.namespace);
    let account_what = format!("service account {}/{account_name}", request.namespace);
    let account = accounts
        .get_opt(&account_name)
        .await
        .map_err(|e| api_status(&account_what, e))?
        .ok_or_else(|| Status::not_found(format!("{account_what} not found")))?;
    let binding = BoundObject::Pod(PodBinding {
        name: request.pod_name,
        uid: request.pod_uid,
        node: request.node_name,
    });
    // proto3's 0 (unset) gets the default lifetime.
    let requested = Some(request.expiration_seconds);
    let issued = signer
        .issue(&account, Some(&binding), request.audiences, requested)
        .map_err(Status::internal)?;
    Ok(pb::ServiceAccountTokenResponse {
        token: issued.token,
        issued_unix: issued.issued,
        expiration_unix: issued.issued + issued.seconds,
    })
}
