//! Node client certificates, as kube-controller-manager's CSR approver and signer issue
//! them: a `CertificateSigningRequest` for signer
//! `kubernetes.io/kube-apiserver-client-kubelet` is approved (condition `Approved`, reason
//! `AutoApproved`) when
//!
//! - its subject is exactly CN `system:node:<name>`, O `system:nodes`;
//! - its usages are client auth plus at most digital signature and key encipherment;
//! - its requester (`spec.username`/`spec.groups`, which the API server fills in from the
//!   authenticated user) is a bootstrapper (`system:bootstrappers`, a joining node) or that
//!   same node (a renewal);
//!
//! and an approved request is signed by the cluster CA (`status.certificate`), valid for
//! the signing duration (`cox server --cluster-signing-duration`, default a year) or the
//! request's `spec.expirationSeconds` when shorter ([`certificate_duration`]). Anything
//! else is left pending, as Kubernetes leaves it, for an administrator, who approves or
//! denies it through the `approval` subresource (`kubectl certificate approve|deny`).
//!
//! The signer signs every `Approved` request for the signers it owns — the kubelet client
//! signer and `kubernetes.io/kube-apiserver-client` — whoever approved it, and never a
//! `Denied` one; an approved request its signer's rules refuse ([`signable`]: client usages;
//! for the kubelet signer the node subject) gets a `Failed` condition
//! (`SignerValidationFailure`), as Kubernetes' signer does.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use coxswain_api::k8s::{CertificateSigningRequest, CertificateSigningRequestCondition};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use x509_parser::prelude::FromDer;

use crate::apiserver::auth::bootstrap::BOOTSTRAPPERS_GROUP;
use crate::apiserver::auth::node::{NODE_USER_PREFIX, NODES_GROUP};
use crate::apiserver::auth::pki::ClusterPki;

/// The signer of node client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// kube-controller-manager's `--cluster-signing-duration` default: 8760h.
pub const DEFAULT_SIGNING_DURATION: Duration = Duration::from_secs(8760 * 3600);

/// The shortest certificate a request's `spec.expirationSeconds` gets (Kubernetes' 10
/// minutes, twice the backdate for clock skew).
const MIN_REQUESTED_DURATION: Duration = Duration::from_secs(600);

/// How long a certificate signed for a request is valid, as kube-controller-manager's
/// signer decides: `signing` (`--cluster-signing-duration`), or the request's
/// `expirationSeconds` when that is shorter — but never under 10 minutes.
pub fn certificate_duration(signing: Duration, expiration_seconds: Option<i32>) -> Duration {
    let Some(seconds) = expiration_seconds else {
        return signing;
    };
    let requested = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    if requested > signing {
        signing
    } else {
        requested.max(MIN_REQUESTED_DURATION)
    }
}

/// The signer of user client certificates (never approved automatically).
pub const APISERVER_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// Approves and signs node client certificate requests until `shutdown`; certificates are
/// valid for `signing_duration` at most ([`certificate_duration`]).
pub async fn run(
    client: kube::Client,
    pki: Arc<ClusterPki>,
    signing_duration: Duration,
    shutdown: CancellationToken,
) {
    let requests: Api<CertificateSigningRequest> = Api::all(client);
    let mut changes = watcher(requests.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    loop {
        let next = tokio::select! {
            next = changes.next() => next,
            () = shutdown.cancelled() => return,
        };
        match next {
            Some(Ok(csr)) => {
                if let Err(e) = handle(&requests, &pki, signing_duration, &csr).await {
                    let name = csr.metadata.name.as_deref().unwrap_or_default();
                    tracing::warn!(csr = name, "certificate signing request: {e}");
                }
            }
            Some(Err(e)) => tracing::debug!("watching certificate signing requests: {e}"),
            None => return,
        }
    }
}

/// Approves `csr` if it qualifies, then signs it if approved and unsigned.
async fn handle(
    requests: &Api<CertificateSigningRequest>,
    pki: &ClusterPki,
    signing_duration: Duration,
    csr: &CertificateSigningRequest,
) -> Result<(), String> {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let status = csr.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let has = |kind: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == kind && c.status == "True")
    };
    let owned = [KUBELET_CLIENT_SIGNER, APISERVER_CLIENT_SIGNER];
    if status.certificate.is_some()
        || has("Denied")
        || has("Failed")
        || !owned.contains(&csr.spec.signer_name.as_str())
    {
        return Ok(());
    }
    if !has("Approved") {
        if let Err(reason) = qualifies(csr) {
            tracing::info!(csr = %name, "left for an administrator: {reason}");
            return Ok(());
        }
        let all = with_condition(
            &conditions,
            "Approved",
            "AutoApproved",
            "Auto approving node client certificate after SubjectAccessReview.",
        )?;
        let patch = json!({"status": {"conditions": all}});
        requests
            .patch_subresource(
                "approval",
                &name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| format!("approving: {e}"))?;
        tracing::info!(csr = %name, "approved");
    }
    if let Err(reason) = signable(csr) {
        let all = with_condition(&conditions, "Failed", "SignerValidationFailure", &reason)?;
        let patch = json!({"status": {"conditions": all}});
        requests
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("marking it failed: {e}"))?;
        tracing::info!(csr = %name, "not signed: {reason}");
        return Ok(());
    }
    let request = String::from_utf8(csr.spec.request.0.clone()).map_err(|e| e.to_string())?;
    let ttl = certificate_duration(signing_duration, csr.spec.expiration_seconds);
    let certificate = pki
        .sign_client_request_for(&request, ttl)
        .map_err(|e| format!("signing: {e}"))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(certificate);
    let patch = json!({"status": {"certificate": encoded}});
    requests
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("writing the certificate: {e}"))?;
    tracing::info!(csr = %name, "signed");
    Ok(())
}

/// `conditions` and a new `True` condition of `kind`, stamped now.
fn with_condition(
    conditions: &[CertificateSigningRequestCondition],
    kind: &str,
    reason: &str,
    message: &str,
) -> Result<serde_json::Value, String> {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut all = serde_json::to_value(conditions).map_err(|e| e.to_string())?;
    if let Some(list) = all.as_array_mut() {
        list.push(json!({
            "type": kind, "status": "True", "reason": reason, "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now,
        }));
    }
    Ok(all)
}

/// Why `csr` is not a node client certificate request the approver may approve.
pub fn qualifies(csr: &CertificateSigningRequest) -> Result<(), String> {
    let spec = &csr.spec;
    if spec.signer_name != KUBELET_CLIENT_SIGNER {
        return Err(format!(
            "signer {:?} is not {KUBELET_CLIENT_SIGNER}",
            spec.signer_name
        ));
    }
    signable(csr)?;
    let pem = std::str::from_utf8(&spec.request.0).map_err(|_| "the request is not PEM")?;
    let (common_name, _) = subject(pem)?;
    let node = common_name.trim_start_matches(NODE_USER_PREFIX);
    let groups = spec.groups.clone().unwrap_or_default();
    let username = spec.username.clone().unwrap_or_default();
    let bootstrapper = groups.iter().any(|g| g == BOOTSTRAPPERS_GROUP);
    let renewal = username == common_name && groups.iter().any(|g| g == NODES_GROUP);
    if !(bootstrapper || renewal) {
        return Err(format!(
            "requester {username:?} is neither a bootstrapper nor node {node:?}"
        ));
    }
    Ok(())
}

/// Why the signer of `csr` would not sign it, as Kubernetes' signers check: the usages are
/// client auth plus at most digital signature and key encipherment; for the kubelet client
/// signer, the subject is exactly CN `system:node:<name>`, O `system:nodes`.
pub fn signable(csr: &CertificateSigningRequest) -> Result<(), String> {
    let spec = &csr.spec;
    let usages = spec.usages.clone().unwrap_or_default();
    let allowed = ["digital signature", "key encipherment", "client auth"];
    if !usages.iter().any(|u| u == "client auth")
        || usages.iter().any(|u| !allowed.contains(&u.as_str()))
    {
        return Err(format!(
            "usages {usages:?} must be client auth (and digital signature, key encipherment)"
        ));
    }
    let pem = std::str::from_utf8(&spec.request.0).map_err(|_| "the request is not PEM")?;
    let (common_name, organizations) = subject(pem)?;
    if spec.signer_name != KUBELET_CLIENT_SIGNER {
        return Ok(());
    }
    common_name
        .strip_prefix(NODE_USER_PREFIX)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("CN {common_name:?} is not system:node:<name>"))?;
    if organizations != [NODES_GROUP] {
        return Err(format!(
            "O {organizations:?} must be exactly [\"system:nodes\"]"
        ));
    }
    Ok(())
}

/// CN and every O of a PEM certificate signing request.
fn subject(pem: &str) -> Result<(String, Vec<String>), String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("the request is not PEM: {e}"))?;
    let (_, request) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| format!("the request is not a PKCS#10 request: {e}"))?;
    let subject = &request.certification_request_info.subject;
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("the subject has no CN")?
        .to_string();
    let organizations = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Ok((common_name, organizations))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn request(cn: &str, orgs: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn csr(
        pem: &str,
        username: &str,
        groups: &[&str],
        usages: &[&str],
    ) -> CertificateSigningRequest {
        let mut csr = CertificateSigningRequest::default();
        csr.spec.request = ByteString(pem.as_bytes().to_vec());
        csr.spec.signer_name = KUBELET_CLIENT_SIGNER.into();
        csr.spec.username = Some(username.into());
        csr.spec.groups = Some(groups.iter().map(|g| g.to_string()).collect());
        csr.spec.usages = Some(usages.iter().map(|u| u.to_string()).collect());
        csr
    }

    #[test]
    fn bootstrappers_and_renewing_nodes_qualify_escalations_do_not() {
        let good = request("system:node:gpu-1", &["system:nodes"]);
        let usages = ["digital signature", "client auth"];
        let joining = ["system:bootstrappers", "system:authenticated"];
        assert_eq!(
            qualifies(&csr(&good, "system:bootstrap:abcdef", &joining, &usages)),
            Ok(())
        );
        let node = ["system:nodes"];
        assert_eq!(
            qualifies(&csr(&good, "system:node:gpu-1", &node, &usages)),
            Ok(())
        );
        // Another node renewing gpu-1's certificate, a user, extra groups, server usages.
        assert!(qualifies(&csr(&good, "system:node:gpu-2", &node, &usages)).is_err());
        assert!(qualifies(&csr(&good, "alice", &["dev"], &usages)).is_err());
        let masters = request("system:node:gpu-1", &["system:nodes", "system:masters"]);
        let err =
            qualifies(&csr(&masters, "system:bootstrap:abcdef", &joining, &usages)).unwrap_err();
        assert!(err.contains("system:masters"), "{err}");
        let admin = request("kubernetes-admin", &["system:nodes"]);
        assert!(qualifies(&csr(&admin, "system:bootstrap:abcdef", &joining, &usages)).is_err());
        let serving = ["digital signature", "server auth"];
        assert!(qualifies(&csr(&good, "system:bootstrap:abcdef", &joining, &serving)).is_err());
        let mut other_signer = csr(&good, "system:bootstrap:abcdef", &joining, &usages);
        other_signer.spec.signer_name = "kubernetes.io/kube-apiserver-client".into();
        assert!(qualifies(&other_signer).is_err());
    }

    #[test]
    fn signers_check_usages_and_the_kubelet_signer_the_node_subject() {
        let usages = ["digital signature", "client auth"];
        let masters = request("bob", &["system:masters"]);
        let mut user = csr(&masters, "kubernetes-admin", &["system:masters"], &usages);
        assert!(signable(&user).unwrap_err().contains("system:node:<name>"));
        user.spec.signer_name = APISERVER_CLIENT_SIGNER.into();
        assert_eq!(signable(&user), Ok(()));
        user.spec.usages = Some(vec!["server auth".into()]);
        assert!(signable(&user).unwrap_err().contains("usages"));
    }

    #[test]
    fn the_ca_signs_a_request_keeping_its_subject() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(dir.path(), &[]).unwrap();
        let pem = pki
            .sign_client_request(&request("system:node:gpu-1", &["system:nodes"]))
            .unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let user = crate::apiserver::auth::user_of_certificate(&block.contents).unwrap();
        assert_eq!(user.name, "system:node:gpu-1");
        assert_eq!(user.groups, ["system:nodes"]);
        assert!(pki.sign_client_request("not a request").is_err());
    }

    #[test]
    fn requested_durations_are_honoured_between_ten_minutes_and_the_signing_duration() {
        let year = DEFAULT_SIGNING_DURATION;
        let minutes = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(certificate_duration(year, None), year);
        assert_eq!(certificate_duration(year, Some(3600)), minutes(60));
        assert_eq!(
            certificate_duration(year, Some(60)),
            minutes(10),
            "kube's floor"
        );
        assert_eq!(certificate_duration(year, Some(-5)), minutes(10));
        assert_eq!(certificate_duration(minutes(30), Some(7200)), minutes(30));
        // A signing duration under the floor wins over a longer request.
        let short = Duration::from_secs(40);
        assert_eq!(certificate_duration(short, Some(3600)), short);
        assert_eq!(certificate_duration(short, None), short);
    }

    /// Read back from the signed certificate: a long one keeps Kubernetes' 5-minute
    /// backdate and ends `ttl` after notBefore; a short one is backdated a tenth of it and
    /// ends `ttl` after signing.
    #[test]
    fn the_signed_validity_follows_the_duration() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(dir.path(), &[]).unwrap();
        let validity = |ttl: Duration| {
            let pem = pki
                .sign_client_request_for(&request("system:node:gpu-1", &["system:nodes"]), ttl)
                .unwrap();
            let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&block.contents).unwrap();
            let v = cert.validity();
            (v.not_before.timestamp(), v.not_after.timestamp())
        };
        let (before, after) = validity(DEFAULT_SIGNING_DURATION);
        assert_eq!(after - before, 8760 * 3600);
        let (before, after) = validity(Duration::from_secs(40));
        assert_eq!(after - before, 44, "40 s after signing, backdated 4 s");
        let (before, after) = validity(Duration::from_secs(3600));
        assert_eq!(
            after - before,
            3900,
            "an hour after signing, backdated 5 minutes"
        );
    }
}
