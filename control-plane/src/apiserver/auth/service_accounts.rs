//! Service-account tokens, as Kubernetes' TokenRequest API issues them: an ES256 JWT signed
//! by the server's service-account key (`<data-dir>/pki/sa.key`), with the claims
//! kube-apiserver writes (`iss`, `sub` = `system:serviceaccount:<ns>:<name>`, `aud`, `exp`,
//! `iat`, `nbf`, and `kubernetes.io` naming the namespace and service account with its uid).
//!
//! - Issuing: `POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token` with a
//!   `TokenRequest` (JSON, or Kubernetes protobuf as `kubectl create token` sends it);
//!   `expirationSeconds` defaults to an hour and is held between 10 minutes and 48 hours,
//!   as kube-apiserver holds it. Who may ask is RBAC's `create` on `serviceaccounts/token`.
//! - Authenticating: a bearer JWT whose signature verifies, which has not expired, whose
//!   issuer is ours and whose service account still exists with the same uid, is user
//!   `system:serviceaccount:<ns>:<name>` in `system:serviceaccounts` and
//!   `system:serviceaccounts:<ns>`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coxswain_api::k8s::{Pod, ServiceAccount};
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
    /// The node it is bound to.
    pub node: String,
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

    /// [`sign`](Self::sign), bound to a pod when `pod` is given: the token carries the
    /// pod's and its node's names (kube-apiserver's `kubernetes.io.pod` and `.node`
    /// claims) and stops authenticating once that pod is gone.
    pub fn sign_bound(
        &self,
        account: &ServiceAccount,
        pod: Option<&PodBinding>,
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
        if let Some(pod) = pod {
            scope["pod"] = json!({"name": pod.name, "uid": pod.uid});
            scope["node"] = json!({"name": pod.node});
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
        // A pod-bound token lives only as long as its pod (the same uid).
        let pod = &claims["kubernetes.io"]["pod"];
        if !pod.is_null() {
            let stored: Option<Pod> = stored::get(
                &*self.store,
                "v1",
                "Pod",
                Some(&namespace),
                &text(&pod["name"]),
            )
            .await?;
            if stored.and_then(|p| p.metadata.uid).as_deref() != pod["uid"].as_str() {
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
        let (audiences, seconds) = if protobuf {
            super::reviews::token_request_protobuf(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("the protobuf body: {e}")))?
        } else if bytes.is_empty() {
            (Vec::new(), None)
        } else {
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
            let audiences = v["spec"]["audiences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            (audiences, v["spec"]["expirationSeconds"].as_i64())
        };
        let account = self
            .account(namespace, name)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or_else(|| ApiError::NotFound {
                message: format!("serviceaccounts \"{name}\" not found"),
                name: Some(name.to_string()),
                kind: Some("serviceaccounts".into()),
            })?;
        let audiences = if audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            audiences
        };
        let seconds = lifetime(seconds);
        let now = jiff::Timestamp::now().as_second();
        let token = self
            .sign(&account, &audiences, seconds, now)
            .map_err(ApiError::Internal)?;
        let expires = jiff::Timestamp::from_second(now + seconds)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        Ok(json!({
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": null},
            "spec": {"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": null},
            "status": {"token": token, "expirationTimestamp": expires},
        }))
    }

    async fn account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ServiceAccount>, StoreError> {
        stored::get(&*self.store, "v1", "ServiceAccount", Some(namespace), name).await
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
        let binding = |uid: &str| PodBinding {
            name: "p".into(),
            uid: uid.into(),
            node: "n1".into(),
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
