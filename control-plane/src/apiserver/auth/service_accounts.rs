//! Service-account tokens, as Kubernetes' TokenRequest API issues them: an ES256 JWT signed
//! by the server's service-account key (`<data-dir>/pki/sa.key`), with the claims
//! kube-apiserver writes (`iss`, `sub` = `system:serviceaccount:<ns>:<name>`, `aud`, `exp`,
//! `iat`, `nbf`, and `kubernetes.io` naming the namespace and service account with its uid).
//!
//! - Issuing: `POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token` with a
//!   `TokenRequest` (JSON, or Kubernetes protobuf as `kubectl create token` sends it);
//!   `expirationSeconds` defaults to an hour; under 10 minutes (or over 2^32 s) is refused
//!   with a 422 naming `spec.expirationSeconds`, as kube-apiserver refuses it; more than 48
//!   hours is held to 48 hours. Who may ask is RBAC's `create` on `serviceaccounts/token`.
//!   `spec.boundObjectRef` (`kubectl create token --bound-object-kind Pod|Secret`) binds
//!   the token to a pod or secret of the namespace: it must exist (and have the given uid);
//!   a pod must run as that service account. The token then carries kube-apiserver's
//!   `kubernetes.io.pod` (and `.node`) or `.secret` claims.
//! - Authenticating: a bearer JWT whose signature verifies, which has not expired, whose
//!   issuer is ours, whose service account still exists with the same uid — and whose bound
//!   pod or secret, if any, too — is user `system:serviceaccount:<ns>:<name>` in
//!   `system:serviceaccounts` and `system:serviceaccounts:<ns>`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coxswain_api::k8s::ServiceAccount;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

use super::{UserInfo, status, stored};
use crate::apiserver::ApiError;
use crate::store::{Store, StoreError};

/// The issuer kube-apiserver writes by default.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The shortest and longest token lifetimes granted, and the default.
const MIN_SECONDS: i64 = 600;
const MAX_SECONDS: i64 = 48 * 3600;
const DEFAULT_SECONDS: i64 = 3600;

/// The lifetime granted for a request of `seconds` (none: the default), held between
/// kube-apiserver's bounds.
pub fn lifetime(seconds: Option<i64>) -> i64 {
    seconds
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_SECONDS)
        .clamp(MIN_SECONDS, MAX_SECONDS)
}

/// The pod a token is bound to.
#[derive(Debug, Clone)]
pub struct PodBinding {
    /// The pod's name (in the service account's namespace).
    pub name: String,
    /// The pod's uid.
    pub uid: String,
    /// The node it is bound to (empty while it is not scheduled).
    pub node: String,
}

/// The object a token is bound to: it authenticates only while that object exists with
/// the same uid.
#[derive(Debug, Clone)]
pub enum BoundObject {
    /// A pod, and the node it runs on.
    Pod(PodBinding),
    /// A secret (its name and uid).
    Secret {
        /// The secret's name (in the service account's namespace).
        name: String,
        /// Its uid.
        uid: String,
    },
}

impl BoundObject {
    /// The bound object's uid.
    fn uid(&self) -> &str {
        match self {
            BoundObject::Pod(pod) => &pod.uid,
            BoundObject::Secret { uid, .. } => uid,
        }
    }
}

/// A token just issued, with what it was issued for.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Its audiences (the API server's when none were asked for).
    pub audiences: Vec<String>,
    /// When it was issued (Unix seconds).
    pub issued: i64,
    /// How long it is valid, in seconds ([`lifetime`] of the request's).
    pub seconds: i64,
}

/// A TokenRequest's `spec`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TokenRequestSpec {
    /// `audiences` (none: the API server's).
    pub audiences: Vec<String>,
    /// `expirationSeconds`.
    pub expiration_seconds: Option<i64>,
    /// `boundObjectRef`.
    pub bound_object_ref: Option<BoundObjectRef>,
}

/// A TokenRequest's `spec.boundObjectRef`; absent fields are empty.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BoundObjectRef {
    /// `kind`: `Pod` or `Secret`.
    pub kind: String,
    /// `apiVersion`: `v1` or empty.
    pub api_version: String,
    /// `name`.
    pub name: String,
    /// `uid`: when set, the object must have it.
    pub uid: String,
}

/// Issues and checks service-account tokens.
#[derive(Clone)]
pub struct ServiceAccountTokens {
    key: Arc<EcdsaKeyPair>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountTokens")
            .finish_non_exhaustive()
    }
}

impl ServiceAccountTokens {
    /// Tokens signed with the PKCS#8 PEM `key_pem` (see
    /// [`ClusterPki::service_account_key`](super::pki::ClusterPki::service_account_key)),
    /// checked against the service accounts in `store`.
    pub fn new(key_pem: &str, store: Arc<dyn Store>) -> Result<Self, String> {
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("the service-account key: {e}"))?;
        use rustls::pki_types::pem::PemObject as _;
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_pkcs8_der(),
            &SystemRandom::new(),
        )
        .map_err(|e| format!("the service-account key: {e}"))?;
        Ok(Self {
            key: Arc::new(key),
            store,
        })
    }

    /// A token for service account `account` (its namespace, name and uid), valid
    /// `seconds` from `now` (Unix seconds) for `audiences`.
    pub fn sign(
        &self,
        account: &ServiceAccount,
        audiences: &[String],
        seconds: i64,
        now: i64,
    ) -> Result<String, String> {
        self.sign_bound(account, None, audiences, seconds, now)
    }

    /// A token for `account` issued now, as a TokenRequest asks for it: `audiences` (none:
    /// the API server's) and `requested` seconds (held to [`lifetime`]'s bounds), bound to
    /// `bound` if given.
    pub fn issue(
        &self,
        account: &ServiceAccount,
        bound: Option<&BoundObject>,
        audiences: Vec<String>,
        requested: Option<i64>,
    ) -> Result<IssuedToken, String> {
        let audiences = if audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            audiences
        };
        let seconds = lifetime(requested);
        let issued = jiff::Timestamp::now().as_second();
        let token = self.sign_bound(account, bound, &audiences, seconds, issued)?;
        Ok(IssuedToken {
            token,
            audiences,
            issued,
            seconds,
        })
    }

    /// [`sign`](Self::sign), bound to an object when `bound` is given: the token carries
    /// the pod's and its node's names (kube-apiserver's `kubernetes.io.pod` and `.node`
    /// claims) or the secret's (`.secret`), and stops authenticating once it is gone.
    pub fn sign_bound(
        &self,
        account: &ServiceAccount,
        bound: Option<&BoundObject>,
        audiences: &[String],
        seconds: i64,
        now: i64,
    ) -> Result<String, String> {
        let namespace = account.metadata.namespace.clone().unwrap_or_default();
        let name = account.metadata.name.clone().unwrap_or_default();
        let uid = account.metadata.uid.clone().unwrap_or_default();
        let header = json!({"alg": "ES256", "typ": "JWT"});
        let mut scope = json!({
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": uid},
        });
        match bound {
            Some(BoundObject::Pod(pod)) => {
                scope["pod"] = json!({"name": pod.name, "uid": pod.uid});
                if !pod.node.is_empty() {
                    scope["node"] = json!({"name": pod.node});
                }
            }
            Some(BoundObject::Secret { name, uid }) => {
                scope["secret"] = json!({"name": name, "uid": uid});
            }
            None => {}
        }
        let claims = json!({
            "iss": ISSUER,
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "aud": audiences,
            "iat": now, "nbf": now, "exp": now + seconds,
            "kubernetes.io": scope,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| "signing the token failed".to_string())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// The user `token` stands for at `now` (Unix seconds); `None` when it is not a valid,
    /// unexpired token of ours for a service account that still exists.
    pub async fn authenticate(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Option<UserInfo>, StoreError> {
        let Some(claims) = self.verify(token, now) else {
            return Ok(None);
        };
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let namespace = text(&claims["kubernetes.io"]["namespace"]);
        let name = text(&claims["kubernetes.io"]["serviceaccount"]["name"]);
        let uid = text(&claims["kubernetes.io"]["serviceaccount"]["uid"]);
        let account: Option<ServiceAccount> = self.account(&namespace, &name).await?;
        if account.and_then(|a| a.metadata.uid).as_deref() != Some(uid.as_str()) {
            return Ok(None);
        }
        // A bound token lives only as long as its pod or secret (the same uid).
        for (claim, kind) in [("pod", "Pod"), ("secret", "Secret")] {
            let bound = &claims["kubernetes.io"][claim];
            if bound.is_null() {
                continue;
            }
            let object = self.object(kind, &namespace, &text(&bound["name"])).await?;
            if object.as_ref().and_then(|o| o["metadata"]["uid"].as_str()) != bound["uid"].as_str()
            {
                return Ok(None);
            }
        }
        Ok(Some(UserInfo {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            uid,
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
            ],
        }))
    }

    /// The claims of `token` if its signature is ours and it is current at `now`.
    fn verify(&self, token: &str, now: i64) -> Option<Value> {
        let mut parts = token.split('.');
        let (header, claims, sig) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header["alg"] != "ES256" {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        );
        let signed = &token[..token.len() - sig.len() - 1];
        public.verify(signed.as_bytes(), &signature).ok()?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        let current = claims["exp"].as_i64().is_some_and(|exp| now < exp)
            && claims["nbf"].as_i64().is_none_or(|nbf| nbf <= now + 60);
        (current && claims["iss"] == ISSUER).then_some(claims)
    }

    /// Answers a TokenRequest for service account `name` in `namespace`.
    pub async fn answer(
        &self,
        namespace: &str,
        name: &str,
        protobuf: bool,
        body: Body,
    ) -> Response {
        match self.token_request(namespace, name, protobuf, body).await {
            Ok(review) => status(StatusCode::CREATED, review),
            Err(e) => e.into_response(),
        }
    }

    async fn token_request(
        &self,
        namespace: &str,
        name: &str,
        protobuf: bool,
        body: Body,
    ) -> Result<Value, ApiError> {
        let bytes = crate::apiserver::negotiate::read_body(body).await?;
        let spec = if protobuf {
            super::reviews::token_request_protobuf(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("the protobuf body: {e}")))?
        } else if bytes.is_empty() {
            TokenRequestSpec::default()
        } else {
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
            json_spec(&v["spec"])
        };
        let TokenRequestSpec {
            audiences,
            expiration_seconds: seconds,
            bound_object_ref,
        } = spec;
        let account = self
            .account(namespace, name)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or_else(|| ApiError::NotFound {
                message: format!("serviceaccounts \"{name}\" not found"),
                name: Some(name.to_string()),
                kind: Some("serviceaccounts".into()),
            })?;
        if let Some(requested) = seconds
            && let Err(message) = coxswain_api::validation::token_expiration(requested)
        {
            let path = coxswain_api::validation::FieldPath::new("spec").child("expirationSeconds");
            return Err(ApiError::Invalid {
                kind: "TokenRequest".into(),
                name: name.to_string(),
                causes: vec![coxswain_api::validation::FieldError::invalid(
                    &path, message,
                )],
            });
        }
        let (bound, bound_ref) = match &bound_object_ref {
            Some(r) => {
                let bound = self.bound_object(namespace, name, r).await?;
                let reference = json!({"kind": r.kind, "apiVersion": "v1", "name": r.name,
                    "uid": bound.uid()});
                (Some(bound), Some(reference))
            }
            None => (None, None),
        };
        let issued = self
            .issue(&account, bound.as_ref(), audiences, seconds)
            .map_err(ApiError::Internal)?;
        let expires = jiff::Timestamp::from_second(issued.issued + issued.seconds)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        Ok(json!({
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": null},
            "spec": {"audiences": issued.audiences, "expirationSeconds": issued.seconds,
                "boundObjectRef": bound_ref},
            "status": {"token": issued.token, "expirationTimestamp": expires},
        }))
    }

    async fn account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ServiceAccount>, StoreError> {
        stored::get(&*self.store, "v1", "ServiceAccount", Some(namespace), name).await
    }

    /// The core (`v1`) object `kind`/`name` in `namespace`, as JSON.
    async fn object(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, StoreError> {
        stored::get(&*self.store, "v1", kind, Some(namespace), name).await
    }

    /// The object a TokenRequest for `account` asks to bind its token to, checked as
    /// kube-apiserver checks it: a pod or secret of the namespace that exists, with the
    /// given uid if one is given; a pod running as `account`.
    async fn bound_object(
        &self,
        namespace: &str,
        account: &str,
        r: &BoundObjectRef,
    ) -> Result<BoundObject, ApiError> {
        let field = "spec.boundObjectRef";
        let resource = match r.kind.as_str() {
            "Pod" => "pods",
            "Secret" => "secrets",
            other => {
                return Err(ApiError::BadRequest(format!(
                    "{field}.kind: Unsupported value: {other:?}: supported values: \"Pod\", \"Secret\""
                )));
            }
        };
        if !r.api_version.is_empty() && r.api_version != "v1" {
            return Err(ApiError::BadRequest(format!(
                "{field}.apiVersion: Unsupported value: {:?}: supported values: \"v1\"",
                r.api_version
            )));
        }
        if r.name.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "{field}.name: Required value"
            )));
        }
        let object = self
            .object(&r.kind, namespace, &r.name)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or_else(|| ApiError::NotFound {
                message: format!("{resource} \"{}\" not found", r.name),
                name: Some(r.name.clone()),
                kind: Some(resource.into()),
            })?;
        let uid = object["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !r.uid.is_empty() && r.uid != uid {
            return Err(ApiError::Conflict {
                resource: resource.into(),
                name: r.name.clone(),
                reason: format!(
                    "the UID in the bound object reference ({}) does not match the UID in record ({uid}). The object might have been deleted and then recreated",
                    r.uid
                ),
            });
        }
        if r.kind == "Secret" {
            return Ok(BoundObject::Secret {
                name: r.name.clone(),
                uid,
            });
        }
        let runs_as = object["spec"]["serviceAccountName"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or(crate::apiserver::service_account::DEFAULT_ACCOUNT);
        if runs_as != account {
            return Err(ApiError::BadRequest(format!(
                "cannot bind token for serviceaccount {account:?} to pod running with different serviceaccount name."
            )));
        }
        Ok(BoundObject::Pod(PodBinding {
            name: r.name.clone(),
            uid,
            node: object["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }))
    }
}

/// A JSON TokenRequest's `spec`.
fn json_spec(spec: &Value) -> TokenRequestSpec {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let r = &spec["boundObjectRef"];
    TokenRequestSpec {
        audiences: spec["audiences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        expiration_seconds: spec["expirationSeconds"].as_i64(),
        bound_object_ref: r.is_object().then(|| BoundObjectRef {
            kind: text(&r["kind"]),
            api_version: text(&r["apiVersion"]),
            name: text(&r["name"]),
            uid: text(&r["uid"]),
        }),
    }
}

/// The namespace and name of a TokenRequest path
/// (`/api/v1/namespaces/<ns>/serviceaccounts/<name>/token`).
pub fn token_request_target(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let mut parts = rest.split('/');
    let (namespace, kind, name, sub) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (kind == "serviceaccounts" && sub == "token" && parts.next().is_none() && !name.is_empty())
        .then_some((namespace, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedStore;

    fn account(uid: &str) -> ServiceAccount {
        let mut account = ServiceAccount::default();
        account.metadata.namespace = Some("ml".into());
        account.metadata.name = Some("bot".into());
        account.metadata.uid = Some(uid.into());
        account
    }

    async fn tokens(dir: &std::path::Path) -> (ServiceAccountTokens, Arc<dyn Store>) {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.join("store")).unwrap());
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        (
            ServiceAccountTokens::new(&key, store.clone()).unwrap(),
            store,
        )
    }

    #[tokio::test]
    async fn tokens_verify_until_they_expire_and_while_their_account_lives() {
        let dir = tempfile::tempdir().unwrap();
        let (tokens, store) = tokens(dir.path()).await;
        let key =
            coxswain_api::registry::store_key("v1", "ServiceAccount", Some("ml"), "bot").unwrap();
        store
            .create(&key, serde_json::to_vec(&account("u1")).unwrap().into())
            .await
            .unwrap();
        let token = tokens
            .sign(&account("u1"), &[ISSUER.into()], 600, 1_000)
            .unwrap();
        let user = tokens.authenticate(&token, 1_100).await.unwrap().unwrap();
        assert_eq!(user.name, "system:serviceaccount:ml:bot");
        assert_eq!(
            user.groups,
            ["system:serviceaccounts", "system:serviceaccounts:ml"]
        );
        assert!(
            tokens.authenticate(&token, 1_600).await.unwrap().is_none(),
            "expired"
        );
        // A flipped signature byte, another key's token, a recreated account (new uid).
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(
            tokens
                .authenticate(&tampered, 1_100)
                .await
                .unwrap()
                .is_none()
        );
        let (other, _) = super::tests::tokens(&dir.path().join("other")).await;
        let foreign = other.sign(&account("u1"), &[], 600, 1_000).unwrap();
        assert!(
            tokens
                .authenticate(&foreign, 1_100)
                .await
                .unwrap()
                .is_none()
        );
        let renamed = tokens.sign(&account("u2"), &[], 600, 1_000).unwrap();
        assert!(
            tokens
                .authenticate(&renamed, 1_100)
                .await
                .unwrap()
                .is_none()
        );
        assert!(tokens.authenticate("a.b", 1_100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_pod_bound_token_dies_with_its_pod() {
        let dir = tempfile::tempdir().unwrap();
        let (tokens, store) = tokens(dir.path()).await;
        let account_key =
            coxswain_api::registry::store_key("v1", "ServiceAccount", Some("ml"), "bot").unwrap();
        store
            .create(
                &account_key,
                serde_json::to_vec(&account("u1")).unwrap().into(),
            )
            .await
            .unwrap();
        let pod_key = coxswain_api::registry::store_key("v1", "Pod", Some("ml"), "p").unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ml", "uid": "pod-1"}});
        store
            .create(&pod_key, serde_json::to_vec(&pod).unwrap().into())
            .await
            .unwrap();
        let binding = |uid: &str| {
            BoundObject::Pod(PodBinding {
                name: "p".into(),
                uid: uid.into(),
                node: "n1".into(),
            })
        };
        let token = tokens
            .sign_bound(
                &account("u1"),
                Some(&binding("pod-1")),
                &[ISSUER.into()],
                600,
                1_000,
            )
            .unwrap();
        let user = tokens.authenticate(&token, 1_100).await.unwrap().unwrap();
        assert_eq!(user.name, "system:serviceaccount:ml:bot");
        let claims = tokens.verify(&token, 1_100).unwrap();
        assert_eq!(claims["kubernetes.io"]["pod"]["uid"], "pod-1");
        assert_eq!(claims["kubernetes.io"]["node"]["name"], "n1");
        // Bound to an older pod of the same name, or after the pod is deleted: nobody.
        let older = tokens
            .sign_bound(
                &account("u1"),
                Some(&binding("pod-0")),
                &[ISSUER.into()],
                600,
                1_000,
            )
            .unwrap();
        assert!(tokens.authenticate(&older, 1_100).await.unwrap().is_none());
        store.delete(&pod_key, None).await.unwrap();
        assert!(tokens.authenticate(&token, 1_100).await.unwrap().is_none());
    }

    #[test]
    fn requested_lifetimes_are_held_to_kube_apiservers_bounds() {
        assert_eq!(lifetime(None), 3600);
        assert_eq!(lifetime(Some(0)), 3600);
        assert_eq!(lifetime(Some(60)), 600);
        assert_eq!(lifetime(Some(7200)), 7200);
        assert_eq!(lifetime(Some(1_000_000)), 48 * 3600);
    }

    #[test]
    fn token_request_paths() {
        assert_eq!(
            token_request_target("/api/v1/namespaces/ml/serviceaccounts/bot/token"),
            Some(("ml", "bot"))
        );
        assert_eq!(
            token_request_target("/api/v1/namespaces/ml/serviceaccounts/bot"),
            None
        );
        assert_eq!(
            token_request_target("/api/v1/namespaces/ml/pods/bot/token"),
            None
        );
    }
}
