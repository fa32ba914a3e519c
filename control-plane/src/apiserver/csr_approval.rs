//! Approving and denying CertificateSigningRequests, as kube-apiserver does.
//!
//! - The `approval` subresource (`PUT|PATCH .../certificatesigningrequests/{name}/approval`,
//!   what `kubectl certificate approve|deny` sends, as Kubernetes protobuf) changes only
//!   `status.conditions`: the spec and certificate stay as stored
//!   ([`with_new_conditions`]).
//! - Conditions are validated as Kubernetes validates them: a type, Approved/Denied/Failed
//!   only with status `True`, no type twice, Approved and Denied mutually exclusive, and an
//!   Approved, Denied or Failed condition is never removed; through `status` (or the main
//!   resource), Approved and Denied cannot be added or changed at all
//!   ([`check_status_update`]).
//! - Kubernetes' `CertificateApproval` admission ([`admit_approver`]): on the TLS listener
//!   the caller must also be allowed verb `approve` on resource `signers`
//!   (`certificates.k8s.io`) named after the request's signer or its domain's wildcard
//!   (`kubernetes.io/*`).

use std::sync::Arc;

use axum::http::Extensions;
use coxswain_api::validation::{FieldError, FieldPath};
use serde_json::{Map, Value, json};

use super::auth::{Authenticator, UserInfo};
use super::handlers::Ctx;
use super::objects::{from_store, now};
use super::protobuf_wire::{Wire, field, fields, string, unwrap_envelope};
use super::request::ResourcePath;
use super::status_error::ApiError;

const APPROVED: &str = "Approved";
const DENIED: &str = "Denied";
const FAILED: &str = "Failed";

/// Whether `path` names a CertificateSigningRequest's `approval` subresource.
pub fn is_approval(path: &ResourcePath) -> bool {
    path.kind.kind == "CertificateSigningRequest" && path.subresource.as_deref() == Some("approval")
}

/// Kubernetes' `CertificateApproval` admission: a caller authenticated on the TLS listener
/// (its [`UserInfo`] and the [`Authenticator`] are request extensions there) must be allowed
/// to `approve` for the stored request's signer, else 403 with Kubernetes' message. The
/// plain listener carries no user and is not checked.
pub async fn admit_approver(extensions: &Extensions, ctx: &Ctx<'_>) -> Result<(), ApiError> {
    let (Some(user), Some(auth)) = (
        extensions.get::<UserInfo>(),
        extensions.get::<Arc<Authenticator>>(),
    ) else {
        return Ok(());
    };
    let stored = from_store(&ctx.load().await?)?;
    let signer = stored
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if auth.may_use_signer(user, "approve", signer).await {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "certificatesigningrequests.certificates.k8s.io {:?} is forbidden: user not permitted \
         to approve requests with signerName {signer:?}",
        ctx.name()?
    )))
}

/// The stored request `old` with `candidate`'s conditions (their missing timestamps filled
/// in as Kubernetes does), or 422 naming what the new conditions break.
pub fn with_new_conditions(old: &Value, candidate: &Value, name: &str) -> Result<Value, ApiError> {
    let mut conditions = conditions_of(candidate);
    let previous = conditions_of(old);
    let mut errors = validate(&conditions, &previous);
    errors.extend(removed(&conditions, &previous));
    invalid_if_any(name, errors)?;
    fill_timestamps(&mut conditions, &previous, &now());
    let mut merged = old.clone();
    let status = merged
        .as_object_mut()
        .map(|o| o.entry("status").or_insert_with(|| json!({})));
    if let Some(status) = status.and_then(Value::as_object_mut) {
        status.insert("conditions".into(), Value::Array(conditions));
    }
    Ok(merged)
}

/// A `status` write to a request: its conditions valid, no Approved, Denied or Failed
/// condition removed, and Approved and Denied neither added nor changed (that is the
/// `approval` subresource's job).
pub fn check_status_update(old: &Value, new: &Value, name: &str) -> Result<(), ApiError> {
    let conditions = conditions_of(new);
    let previous = conditions_of(old);
    let mut errors = validate(&conditions, &previous);
    errors.extend(removed(&conditions, &previous));
    let path = FieldPath::new("status").child("conditions");
    for kind in [APPROVED, DENIED] {
        let before = of_type(&previous, kind);
        let after = of_type(&conditions, kind);
        if after.len() > before.len() {
            errors.push(FieldError::forbidden(
                &path,
                format!("updates may not add a condition of type {kind:?}"),
            ));
        } else if after.len() == before.len() && after != before {
            errors.push(FieldError::forbidden(
                &path,
                format!("updates may not modify a condition of type {kind:?}"),
            ));
        }
    }
    invalid_if_any(name, errors)
}

fn invalid_if_any(name: &str, causes: Vec<FieldError>) -> Result<(), ApiError> {
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::Invalid {
        kind: "CertificateSigningRequest".into(),
        name: name.into(),
        causes,
    })
}

fn conditions_of(object: &Value) -> Vec<Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn text<'a>(condition: &'a Value, field: &str) -> &'a str {
    condition.get(field).and_then(Value::as_str).unwrap_or("")
}

fn of_type<'a>(conditions: &'a [Value], kind: &str) -> Vec<&'a Value> {
    conditions
        .iter()
        .filter(|c| text(c, "type") == kind)
        .collect()
}

/// Kubernetes' `validateConditions`; a rule the stored conditions already break is not
/// applied (its compatibility with existing data).
fn validate(conditions: &[Value], previous: &[Value]) -> Vec<FieldError> {
    let path = FieldPath::new("status").child("conditions");
    let has = |kind: &str| previous.iter().any(|c| text(c, "type") == kind);
    let allow_both = has(APPROVED) && has(DENIED);
    let allow_empty_type = has("");
    let mut types = previous.iter().map(|c| text(c, "type")).collect::<Vec<_>>();
    types.sort_unstable();
    let allow_duplicates = types.windows(2).any(|w| w[0] == w[1]);
    let mut errors = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    let (mut approved, mut denied) = (false, false);
    for (i, condition) in conditions.iter().enumerate() {
        let at = path.index(i);
        let kind = text(condition, "type");
        if kind.is_empty() && !allow_empty_type {
            errors.push(FieldError::required(&at.child("type"), ""));
        }
        let allowed: &[&str] = if matches!(kind, APPROVED | DENIED | FAILED) {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        let status = text(condition, "status");
        if status.is_empty() {
            errors.push(FieldError::required(&at.child("status"), ""));
        } else if !allowed.contains(&status) {
            errors.push(FieldError::not_supported(
                &at.child("status"),
                status,
                allowed,
            ));
        }
        if !allow_both {
            approved |= kind == APPROVED;
            denied |= kind == DENIED;
            if matches!(kind, APPROVED | DENIED) && approved && denied {
                errors.push(FieldError::invalid(
                    &at.child("type"),
                    "Approved and Denied conditions are mutually exclusive",
                ));
            }
        }
        if !allow_duplicates {
            if seen.contains(&kind) {
                errors.push(FieldError::duplicate(&at.child("type"), kind));
            }
            seen.push(kind);
        }
    }
    errors
}

/// An Approved, Denied or Failed condition the update drops.
fn removed(conditions: &[Value], previous: &[Value]) -> Vec<FieldError> {
    let path = FieldPath::new("status").child("conditions");
    [APPROVED, DENIED, FAILED]
        .into_iter()
        .filter(|kind| of_type(conditions, kind).len() < of_type(previous, kind).len())
        .map(|kind| {
            FieldError::forbidden(
                &path,
                format!("updates may not remove a condition of type {kind:?}"),
            )
        })
        .collect()
}

/// Kubernetes' `populateConditionTimestamps`: a missing `lastUpdateTime` is now; a missing
/// `lastTransitionTime` is kept from the stored condition of the same type and status, else
/// now.
fn fill_timestamps(conditions: &mut [Value], previous: &[Value], now: &str) {
    for condition in conditions.iter_mut() {
        let transition = previous
            .iter()
            .find(|p| {
                text(p, "type") == text(condition, "type")
                    && text(p, "status") == text(condition, "status")
                    && !text(p, "lastTransitionTime").is_empty()
            })
            .map_or(now.to_string(), |p| {
                text(p, "lastTransitionTime").to_string()
            });
        let Some(fields) = condition.as_object_mut() else {
            continue;
        };
        for (field, value) in [
            ("lastUpdateTime", now.to_string()),
            ("lastTransitionTime", transition),
        ] {
            if fields
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                fields.insert(field.into(), Value::String(value));
            }
        }
    }
}

/// The parts of an enveloped protobuf `CertificateSigningRequest` an approval reads, as the
/// JSON they stand for: `metadata` (name 1, uid 5, resourceVersion 6) and
/// `status.conditions` (status 3, conditions 1: type 1, reason 2, message 3,
/// lastUpdateTime 4, lastTransitionTime 5, status 6).
pub fn from_protobuf(bytes: &[u8]) -> Result<Value, String> {
    let csr = unwrap_envelope(bytes)?;
    let mut metadata = Map::new();
    if let Some(meta) = field(csr, 1)? {
        for (number, name) in [(1, "name"), (5, "uid"), (6, "resourceVersion")] {
            if let Some(value) = string(meta, number, name)? {
                metadata.insert(name.into(), Value::String(value));
            }
        }
    }
    let mut conditions = Vec::new();
    if let Some(status) = field(csr, 3)? {
        for (number, value) in fields(status)? {
            if let (1, Wire::Bytes(condition)) = (number, value) {
                conditions.push(condition_from_protobuf(condition)?);
            }
        }
    }
    Ok(json!({"metadata": metadata, "status": {"conditions": conditions}}))
}

fn condition_from_protobuf(message: &[u8]) -> Result<Value, String> {
    let mut out = Map::new();
    for (number, name) in [(1, "type"), (2, "reason"), (3, "message"), (6, "status")] {
        if let Some(value) = string(message, number, name)? {
            out.insert(name.into(), Value::String(value));
        }
    }
    for (number, name) in [(4, "lastUpdateTime"), (5, "lastTransitionTime")] {
        if let Some(time) = field(message, number)?
            && !time.is_empty()
        {
            out.insert(name.into(), Value::String(time_from_protobuf(time, name)?));
        }
    }
    Ok(Value::Object(out))
}

/// A `metav1.Time` (seconds 1, nanos 2) as RFC 3339 in whole seconds.
fn time_from_protobuf(message: &[u8], name: &str) -> Result<String, String> {
    let mut seconds = 0i64;
    for (number, value) in fields(message)? {
        if let (1, Wire::Varint(v)) = (number, value) {
            seconds = v as i64;
        }
    }
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .map_err(|e| format!("{name}: {e}"))
}

#[cfg(test)]
mod tests;
