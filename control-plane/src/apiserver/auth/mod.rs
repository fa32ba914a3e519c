//! Who is asking and whether they may: authentication and authorization for the TLS
//! listener (`cox server --secure-listen`).
//!
//! - [`pki`]: the cluster CA and the serving and admin certificates.
//! - Authentication, in kube-apiserver's order: an X.509 client certificate signed by the
//!   cluster CA (CN = user, O = groups; verified by the TLS handshake, read by
//!   [`user_of_certificate`]), then a bearer token from the static token file
//!   ([`tokens`]), a service-account token ([`service_accounts`]) or a bootstrap token
//!   ([`bootstrap`]). A request with neither, or with an
//!   unknown or expired token, gets 401.
//! - Authorization: deny by default. `system:masters` may do anything and every
//!   authenticated user may read the discovery and version paths ([`Authorizer`], Kubernetes'
//!   `system:discovery`); node credentials reach only their node's objects ([`node`]);
//!   beyond that, what RBAC bindings grant ([`rbac`]). Everything else
//!   is 403 with Kubernetes' message, naming the user, verb, resource, group and namespace.
//!   Every authenticated user may ask who they are and what they may do ([`reviews`]:
//!   `kubectl auth whoami`, `kubectl auth can-i`).
//!
//! The plain loopback listener (`--listen`) and the agents' Unix socket are not
//! authenticated: they stay as they were until every component speaks TLS.

pub mod bootstrap;
mod informer;
pub mod node;
pub mod pki;
pub mod rbac;
pub mod request_info;
pub mod reviews;
pub mod service_accounts;
pub(crate) mod stored;
pub mod tokens;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::apiserver::ApiError;

pub use request_info::{RequestInfo, ResourceAttributes};
pub use tokens::StaticTokens;

/// An authenticated user, as Kubernetes' `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// The user name (`kubernetes-admin`, `system:node:gpu-1`).
    pub name: String,
    /// A stable id, when the authenticator has one.
    pub uid: String,
    /// The groups (`system:masters`); `system:authenticated` is implied.
    pub groups: Vec<String>,
}

/// The identity a TLS connection's client certificate proved, put on each of its requests
/// by the TLS listener; `None` when the client sent no certificate.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity(pub Option<UserInfo>);

/// The user and groups of a client certificate (DER): CN and every O, as Kubernetes reads
/// them. `None` when the certificate cannot be parsed or has no CN.
pub fn user_of_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(UserInfo {
        name,
        uid: String::new(),
        groups,
    })
}

/// Authentication and authorization settings of the TLS listener.
#[derive(Debug, Default)]
pub struct Authenticator {
    /// Bearer tokens (`--token-auth-file`).
    pub tokens: StaticTokens,
    /// Bootstrap tokens (secrets in `kube-system`); `None`: not accepted.
    pub bootstrap: Option<bootstrap::BootstrapTokens>,
    /// Service-account tokens (issued by TokenRequest); `None`: neither issued nor accepted.
    pub service_accounts: Option<service_accounts::ServiceAccountTokens>,
    /// The node authorizer (node credentials reach only their node's objects); `None`:
    /// nodes are judged by RBAC alone.
    pub nodes: Option<node::NodeAuthorizer>,
    /// Role-based rules from the store; `None`: only what [`Authorizer`] allows.
    pub rbac: Option<rbac::Rbac>,
}

impl Authenticator {
    /// Whether `user` may do what `info` describes: [`Authorizer`]'s fixed rules, then the
    /// node authorizer for node credentials, then RBAC. A store error denies (and is
    /// logged).
    pub async fn authorize(&self, user: &UserInfo, info: &RequestInfo) -> bool {
        if Authorizer.allows(user, info) {
            return true;
        }
        if let Some(nodes) = &self.nodes {
            match nodes.decide(user, info).await {
                Ok(node::Decision::Allow) => return true,
                Ok(node::Decision::Deny) => return false,
                Ok(node::Decision::NoOpinion) => {}
                Err(e) => {
                    tracing::warn!(user = %user.name, "node authorizer: reading the store: {e}");
                    return false;
                }
            }
        }
        let Some(rbac) = &self.rbac else {
            return false;
        };
        rbac.allows(user, info).await.unwrap_or_else(|e| {
            tracing::warn!(user = %user.name, "RBAC: reading roles and bindings: {e}");
            false
        })
    }

    /// Whether `user` may `verb` (`approve`, `sign`) requests for `signer`: resource
    /// `signers` of `certificates.k8s.io` named after the signer or its domain's wildcard
    /// (`kubernetes.io/*`), as Kubernetes' `IsAuthorizedForSignerName` asks.
    pub async fn may_use_signer(&self, user: &UserInfo, verb: &str, signer: &str) -> bool {
        let domain = signer.split('/').next().unwrap_or_default();
        for name in [signer.to_string(), format!("{domain}/*")] {
            let info = RequestInfo {
                verb: verb.to_string(),
                resource: Some(ResourceAttributes {
                    group: "certificates.k8s.io".into(),
                    resource: "signers".into(),
                    subresource: String::new(),
                    namespace: String::new(),
                    name,
                }),
                path: String::new(),
            };
            if self.authorize(user, &info).await {
                return true;
            }
        }
        false
    }

    /// The request's user: its connection's certificate first, then its bearer token.
    /// `Err` for a bearer token nobody issued; `Ok(None)` for no credentials.
    async fn authenticate(
        &self,
        peer: Option<UserInfo>,
        header: Option<axum::http::HeaderValue>,
    ) -> Result<Option<UserInfo>, ()> {
        if let Some(user) = peer {
            return Ok(Some(user));
        }
        let Some(header) = header else {
            return Ok(None);
        };
        // The scheme is case-insensitive (RFC 9110): the Python client sends `bearer`.
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or(())?;
        if let Some(user) = self.tokens.user(token) {
            return Ok(Some(user.clone()));
        }
        if token.matches('.').count() == 2
            && let Some(accounts) = &self.service_accounts
        {
            let now = jiff::Timestamp::now().as_second();
            return match accounts.authenticate(token, now).await {
                Ok(Some(user)) => Ok(Some(user)),
                Ok(None) => Err(()),
                Err(e) => {
                    tracing::warn!("service-account token: reading the store: {e}");
                    Err(())
                }
            };
        }
        let Some(bootstrap) = &self.bootstrap else {
            return Err(());
        };
        match bootstrap.authenticate(token).await {
            Ok(Some(user)) => Ok(Some(user)),
            Ok(None) => Err(()),
            Err(e) => {
                tracing::warn!("bootstrap token: reading the store: {e}");
                Err(())
            }
        }
    }
}

/// The fixed rules of the deny-by-default authorizer (see the module docs); RBAC
/// ([`rbac`]) adds what bindings grant.
#[derive(Debug, Default, Clone, Copy)]
pub struct Authorizer;

/// Non-resource paths every authenticated user may GET (`system:discovery`,
/// `system:public-info-viewer`).
/// The node service's gRPC methods, which nodes (`system:nodes`) may call; the node
/// service itself then restricts each node to its own objects.
pub const NODE_SERVICE_PATH: &str = "/coxswain.node.v1alpha1.NodeService/";

const DISCOVERY_PATHS: &[&str] = &[
    "/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi",
];

impl Authorizer {
    /// Whether `user` may do what `info` describes.
    pub fn allows(&self, user: &UserInfo, info: &RequestInfo) -> bool {
        if user.groups.iter().any(|g| g == pki::MASTERS_GROUP) {
            return true;
        }
        match &info.resource {
            None if info.path.starts_with(NODE_SERVICE_PATH) => {
                info.verb == "post" && user.groups.iter().any(|g| g == node::NODES_GROUP)
            }
            None => {
                info.verb == "get"
                    && DISCOVERY_PATHS
                        .iter()
                        .any(|p| info.path == *p || info.path.starts_with(&format!("{p}/")))
            }
            // `/api/v1`, `/apis/<g>/<v>` themselves parse as non-resource; a resource path
            // needs a rule, and there are none yet.
            Some(_) => false,
        }
    }
}

/// The middleware of the TLS listener: 401 without a valid credential, 403 when the
/// authorizer says no, else the request goes on with its [`UserInfo`] as an extension.
pub async fn middleware(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.0.clone());
    let header = request.headers().get(AUTHORIZATION).cloned();
    let user = match auth.authenticate(peer, header).await {
        Ok(Some(user)) => user,
        Ok(None) | Err(()) => return unauthorized(),
    };
    if reviews::is_review(request.method(), request.uri().path()) {
        let path = request.uri().path().to_string();
        let protobuf = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/vnd.kubernetes.protobuf"));
        return reviews::answer(&auth, &user, &path, protobuf, request.into_body()).await;
    }
    let info = RequestInfo::parse(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    );
    if !auth.authorize(&user, &info).await {
        tracing::debug!(user = %user.name, verb = %info.verb, path = %info.path, "forbidden");
        return forbidden(&user, &info);
    }
    if request.method() == axum::http::Method::POST
        && let Some((namespace, name)) =
            service_accounts::token_request_target(request.uri().path())
        && let Some(accounts) = &auth.service_accounts
    {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        let protobuf = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/vnd.kubernetes.protobuf"));
        return accounts
            .answer(&namespace, &name, protobuf, request.into_body())
            .await;
    }
    if request.method() == axum::http::Method::POST && request.uri().path() == CSR_COLLECTION {
        request = match with_requester(request, &user).await {
            Ok(request) => request,
            Err(e) => return e.into_response(),
        };
    }
    request.extensions_mut().insert(user);
    request.extensions_mut().insert(auth);
    next.run(request).await
}

/// Where CertificateSigningRequests are created.
const CSR_COLLECTION: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// A CertificateSigningRequest create with `spec.username`, `spec.uid` and `spec.groups` set
/// from the authenticated user, whatever the client sent (kube-apiserver's CSR strategy):
/// the approver trusts them. Only JSON bodies are taken here.
async fn with_requester(request: Request, user: &UserInfo) -> Result<Request, ApiError> {
    let json_body = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return Err(ApiError::UnsupportedMediaType(
            "certificatesigningrequests are created from application/json bodies".into(),
        ));
    }
    let (mut parts, body) = request.into_parts();
    let bytes = crate::apiserver::negotiate::read_body(body).await?;
    let mut object: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let mut groups = user.groups.clone();
    groups.push("system:authenticated".into());
    if let Some(spec) = object.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.insert("username".into(), json!(user.name));
        spec.insert("uid".into(), json!(user.uid));
        spec.insert("groups".into(), json!(groups));
    }
    let bytes = object.to_string();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// 401 with the `Status` kube-apiserver sends.
fn unauthorized() -> Response {
    status(
        StatusCode::UNAUTHORIZED,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
        }),
    )
}

/// 403 naming the user, verb and resource, worded as kube-apiserver words it.
fn forbidden(user: &UserInfo, info: &RequestInfo) -> Response {
    let body = match &info.resource {
        None => json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!(
                "forbidden: User \"{}\" cannot {} path \"{}\"", user.name, info.verb, info.path
            ),
            "reason": "Forbidden", "details": {}, "code": 403,
        }),
        Some(r) => {
            let what = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            let object = if r.name.is_empty() {
                r.resource.clone()
            } else {
                format!("{} \"{}\"", r.resource, r.name)
            };
            let scope = if r.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace \"{}\"", r.namespace)
            };
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!(
                    "{object} is forbidden: User \"{}\" cannot {} resource \"{what}\" in API group \"{}\" {scope}",
                    user.name, info.verb, r.group
                ),
                "reason": "Forbidden",
                "details": {"name": r.name, "group": r.group, "kind": r.resource},
                "code": 403,
            })
        }
    };
    status(StatusCode::FORBIDDEN, body)
}

pub(crate) fn status(code: StatusCode, body: serde_json::Value) -> Response {
    (code, [(CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    fn user(groups: &[&str]) -> UserInfo {
        UserInfo {
            name: "alice".into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn masters_may_do_anything_others_only_discovery() {
        let list_pods = RequestInfo::parse(&Method::GET, "/api/v1/namespaces/a/pods", None);
        assert!(Authorizer.allows(&user(&["system:masters"]), &list_pods));
        assert!(!Authorizer.allows(&user(&["dev"]), &list_pods));
        let version = RequestInfo::parse(&Method::GET, "/version", None);
        assert!(Authorizer.allows(&user(&[]), &version));
        let groups = RequestInfo::parse(&Method::GET, "/apis/coxswain.dev/v1alpha1", None);
        assert!(Authorizer.allows(&user(&[]), &groups));
        let metrics = RequestInfo::parse(&Method::GET, "/metrics", None);
        assert!(!Authorizer.allows(&user(&[]), &metrics));
        let apis_lookalike = RequestInfo::parse(&Method::GET, "/apisx", None);
        assert!(!Authorizer.allows(&user(&[]), &apis_lookalike));
    }
}
