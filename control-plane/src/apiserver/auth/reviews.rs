//! The self reviews behind `kubectl auth whoami` (`SelfSubjectReview`,
//! `authentication.k8s.io/v1`) and `kubectl auth can-i` (`SelfSubjectAccessReview`,
//! `authorization.k8s.io/v1`): every authenticated user may ask who they are and what they
//! may do (Kubernetes' `system:basic-user`).

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Authenticator, RequestInfo, ResourceAttributes, UserInfo, status};
use crate::apiserver::ApiError;

/// The path of `SelfSubjectReview`s.
pub const SELF_SUBJECT_REVIEWS: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
/// The path of `SelfSubjectAccessReview`s.
pub const SELF_SUBJECT_ACCESS_REVIEWS: &str =
    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/// Whether `method` and `path` ask for a self review.
pub fn is_review(method: &Method, path: &str) -> bool {
    method == Method::POST && (path == SELF_SUBJECT_REVIEWS || path == SELF_SUBJECT_ACCESS_REVIEWS)
}

/// Answers a self review by `user`; `protobuf` when the body is Kubernetes' protobuf
/// encoding (kubectl's typed clients send it), else JSON. Answers are JSON.
pub async fn answer(
    auth: &Authenticator,
    user: &UserInfo,
    path: &str,
    protobuf: bool,
    body: Body,
) -> Response {
    let bytes = match crate::apiserver::negotiate::read_body(body).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    if path == SELF_SUBJECT_REVIEWS {
        return status(
            StatusCode::CREATED,
            json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": user_json(user)},
            }),
        );
    }
    let review = if protobuf {
        match protobuf::access_review(&bytes) {
            Ok(v) => v,
            Err(e) => return bad_request(&format!("the protobuf body: {e}")),
        }
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v,
            Err(e) => return bad_request(&format!("the body is not JSON: {e}")),
        }
    };
    let spec = &review["spec"];
    let info = if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        let text = |field: &str| r[field].as_str().unwrap_or_default().to_string();
        RequestInfo {
            verb: text("verb"),
            resource: Some(ResourceAttributes {
                group: text("group"),
                resource: text("resource"),
                subresource: text("subresource"),
                namespace: text("namespace"),
                name: text("name"),
            }),
            path: String::new(),
        }
    } else if let Some(n) = spec.get("nonResourceAttributes").filter(|n| n.is_object()) {
        RequestInfo {
            verb: n["verb"].as_str().unwrap_or_default().to_string(),
            resource: None,
            path: n["path"].as_str().unwrap_or_default().to_string(),
        }
    } else {
        return bad_request(
            "spec: exactly one of resourceAttributes or nonResourceAttributes is required",
        );
    };
    let allowed = auth.authorize(user, &info).await;
    let mut out = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": {"allowed": allowed},
    });
    if allowed {
        out["status"]["reason"] = json!("allowed by system:masters, discovery or an RBAC binding");
    }
    status(StatusCode::CREATED, out)
}

fn user_json(user: &UserInfo) -> Value {
    let mut groups = user.groups.clone();
    groups.push("system:authenticated".into());
    let mut out = json!({"username": user.name, "groups": groups});
    if !user.uid.is_empty() {
        out["uid"] = json!(user.uid);
    }
    out
}

fn bad_request(message: &str) -> Response {
    ApiError::BadRequest(message.to_string()).into_response()
}

/// The `spec` of a protobuf `TokenRequest` (`kubectl create token`).
pub fn token_request_protobuf(
    bytes: &[u8],
) -> Result<super::service_accounts::TokenRequestSpec, String> {
    protobuf::token_request(bytes)
}

/// The few fields of Kubernetes' protobuf encoding read here: a `SelfSubjectAccessReview`'s
/// `spec` (field 2) holds `resourceAttributes` (1) or `nonResourceAttributes` (2) of
/// strings; a `TokenRequest`'s `spec` (2) its audiences (1) and expirationSeconds (4).
mod protobuf {
    use serde_json::{Map, Value, json};

    use crate::apiserver::auth::service_accounts::{BoundObjectRef, TokenRequestSpec};
    use crate::apiserver::protobuf_wire::{Wire, field, fields, string, unwrap_envelope};

    /// The review as the JSON it stands for (`{"spec": {...}}`).
    pub fn access_review(bytes: &[u8]) -> Result<Value, String> {
        let raw = unwrap_envelope(bytes)?;
        let spec = field(raw, 2)?.ok_or("no spec")?;
        let mut out = Map::new();
        if let Some(r) = field(spec, 1)? {
            let names = [
                "namespace",
                "verb",
                "group",
                "version",
                "resource",
                "subresource",
                "name",
            ];
            out.insert("resourceAttributes".into(), strings(r, &names)?);
        }
        if let Some(n) = field(spec, 2)? {
            out.insert(
                "nonResourceAttributes".into(),
                strings(n, &["path", "verb"])?,
            );
        }
        Ok(json!({ "spec": out }))
    }

    /// The `spec` of an enveloped `TokenRequest`: its audiences (repeated field 1),
    /// boundObjectRef (3: kind, apiVersion, name, uid as fields 1–4) and
    /// expirationSeconds (varint field 4).
    pub fn token_request(bytes: &[u8]) -> Result<TokenRequestSpec, String> {
        let raw = unwrap_envelope(bytes)?;
        let mut out = TokenRequestSpec::default();
        let Some(spec) = field(raw, 2)? else {
            return Ok(out);
        };
        for (number, value) in fields(spec)? {
            match (number, value) {
                (4, Wire::Varint(v)) => {
                    out.expiration_seconds =
                        Some(i64::try_from(v).map_err(|_| "expirationSeconds")?);
                }
                (1, Wire::Bytes(b)) => {
                    let text = std::str::from_utf8(b).map_err(|_| "audience: not UTF-8")?;
                    out.audiences.push(text.to_string());
                }
                (3, Wire::Bytes(r)) => {
                    let text = |n, name| Ok::<_, String>(string(r, n, name)?.unwrap_or_default());
                    out.bound_object_ref = Some(BoundObjectRef {
                        kind: text(1, "boundObjectRef.kind")?,
                        api_version: text(2, "boundObjectRef.apiVersion")?,
                        name: text(3, "boundObjectRef.name")?,
                        uid: text(4, "boundObjectRef.uid")?,
                    });
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Fields 1..=names.len() of `message` as strings named `names`.
    fn strings(message: &[u8], names: &[&str]) -> Result<Value, String> {
        let mut out = Map::new();
        for (i, name) in names.iter().enumerate() {
            if let Some(text) = string(message, i as u64 + 1, name)? {
                out.insert((*name).into(), Value::String(text));
            }
        }
        Ok(Value::Object(out))
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::apiserver::protobuf_wire::MAGIC;

        fn len_field(number: u8, bytes: &[u8]) -> Vec<u8> {
            let mut out = vec![(number << 3) | 2, bytes.len() as u8];
            out.extend_from_slice(bytes);
            out
        }

        #[test]
        fn reads_the_attributes_of_an_enveloped_review() {
            let attributes = [
                len_field(2, b"list"),
                len_field(5, b"pods"),
                len_field(1, b"ml"),
            ]
            .concat();
            let spec = len_field(1, &attributes);
            let review = [len_field(1, b""), len_field(2, &spec)].concat();
            let type_meta = len_field(1, b"authorization.k8s.io/v1");
            let unknown = [len_field(1, &type_meta), len_field(2, &review)].concat();
            let body = [MAGIC, &unknown].concat();
            let value = access_review(&body).unwrap();
            let r = &value["spec"]["resourceAttributes"];
            assert_eq!(
                (r["verb"].as_str(), r["resource"].as_str()),
                (Some("list"), Some("pods"))
            );
            assert_eq!(r["namespace"], "ml");
            assert!(access_review(b"{}").is_err());
            // A TokenRequest: spec { audiences: "a", "b"; expirationSeconds: 900;
            // boundObjectRef { kind: "Pod", name: "p" } }.
            let bound = [len_field(1, b"Pod"), len_field(3, b"p")].concat();
            let spec = [
                len_field(1, b"a"),
                len_field(1, b"b"),
                len_field(3, &bound),
                vec![4 << 3, 0x84, 0x07],
            ]
            .concat();
            let request = [len_field(1, b""), len_field(2, &spec)].concat();
            let body = [MAGIC, &len_field(2, &request)].concat();
            let spec = token_request(&body).unwrap();
            assert_eq!(
                (spec.audiences, spec.expiration_seconds),
                (vec!["a".to_string(), "b".to_string()], Some(900))
            );
            let bound = spec.bound_object_ref.unwrap();
            assert_eq!((bound.kind.as_str(), bound.name.as_str()), ("Pod", "p"));
            assert!(bound.uid.is_empty());
            assert!(access_review(&body[..body.len() - 3]).is_err());
        }
    }
}
