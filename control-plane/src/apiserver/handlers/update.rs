//! `PUT` of an object or its `status`: compare-and-swap on `resourceVersion`, server-owned
//! metadata kept, `generation` bumped when the spec changes, and finalizer-driven removal.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::Ctx;
use crate::apiserver::admission::{FieldValidation, admit};
use crate::apiserver::csr_approval;
use crate::apiserver::negotiate::{BodyType, body_type, parse_body, read_body, respond};
use crate::apiserver::objects::{
    finalizers, from_store, has_status, is_terminating, meta_str, set_meta, to_store,
};
use crate::apiserver::pod_security;
use crate::apiserver::request::parse_resource_version;
use crate::apiserver::status_error::ApiError;
use crate::store::{KeyValue, StoreError};

/// Serves `PUT <resource>/<name>[/status]`.
pub async fn update(ctx: &Ctx<'_>, body: Body) -> Result<Response, ApiError> {
    if csr_approval::is_approval(&ctx.path) && is_protobuf(&ctx.headers) {
        // `kubectl certificate approve|deny` sends the request as Kubernetes protobuf.
        let bytes = read_body(body).await?;
        let value = csr_approval::from_protobuf(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("the protobuf body: {e}")))?;
        return update_value(ctx, value, FieldValidation::from_query(&ctx.query)?).await;
    }
    let yaml = match body_type(&ctx.headers)? {
        BodyType::Json => false,
        BodyType::Yaml => true,
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "PUT takes application/json or application/yaml; patch media types are for \
                 PATCH"
                    .to_string(),
            ));
        }
    };
    let field_validation = FieldValidation::from_query(&ctx.query)?;
    let bytes = read_body(body).await?;
    let value = parse_body(&bytes, yaml)?;
    update_value(ctx, value, field_validation).await
}

fn is_protobuf(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/vnd.kubernetes.protobuf"))
}

async fn update_value(
    ctx: &Ctx<'_>,
    value: Value,
    field_validation: FieldValidation,
) -> Result<Response, ApiError> {
    let dry_run = ctx.query.dry_run()?;
    let expected = match meta_str(&value, "resourceVersion") {
        Some(rv) if !rv.is_empty() => Some(parse_resource_version(rv)?),
        _ => None,
    };
    let old = ctx.load().await?;
    let (object, warnings) =
        write_update(ctx, &old, value, expected, field_validation, dry_run).await?;
    Ok(respond(
        StatusCode::OK,
        ctx.format_for_write(),
        &object,
        &warnings,
    ))
}

/// Admits `candidate` as the new state of `old` and writes it with compare-and-swap on
/// `expected` (the client's resourceVersion, if it sent one). Shared with PATCH.
pub async fn write_update(
    ctx: &Ctx<'_>,
    old: &KeyValue,
    candidate: Value,
    expected: Option<u64>,
    field_validation: FieldValidation,
    dry_run: bool,
) -> Result<(Value, Vec<String>), ApiError> {
    let name = ctx.name()?.to_string();
    let old_value = from_store(old)?;
    if let Some(body_name) = meta_str(&candidate, "name")
        && body_name != name
    {
        return Err(ApiError::BadRequest(format!(
            "metadata.name: the name of the object ({body_name:?}) does not match the name in \
             the URL ({name:?})"
        )));
    }
    if let (Some(given), Some(current)) = (meta_str(&candidate, "uid"), meta_str(&old_value, "uid"))
        && !given.is_empty()
        && given != current
    {
        return Err(ApiError::Conflict {
            resource: ctx.resource(),
            name,
            reason: format!(
                "Precondition failed: UID in precondition: {given}, UID in object meta: {current}"
            ),
        });
    }
    if let Some(expected) = expected
        && expected != old.mod_revision
    {
        return Err(ApiError::conflict(&ctx.resource(), &name));
    }
    let candidate = if csr_approval::is_approval(&ctx.path) {
        csr_approval::with_new_conditions(&old_value, &candidate, &name)?
    } else if ctx.path.subresource.as_deref() == Some("status") {
        let mut merged = old_value.clone();
        merged["status"] = candidate.get("status").cloned().unwrap_or(Value::Null);
        if ctx.path.kind.kind == "CertificateSigningRequest" {
            csr_approval::check_status_update(&old_value, &merged, &name)?;
        }
        merged
    } else {
        let mut candidate = candidate;
        if has_status(ctx.path.kind.kind) && candidate.is_object() {
            match old_value.get("status") {
                Some(status) => candidate["status"] = status.clone(),
                None => {
                    candidate.as_object_mut().map(|o| o.remove("status"));
                }
            }
        }
        candidate
    };
    let mut admitted = admit(&ctx.path, candidate, field_validation)?;
    if let Some(namespace) = ctx.path.namespace.as_deref()
        && ctx.path.subresource.is_none()
    {
        let store = &*ctx.state.store;
        let warnings = if ctx.path.kind.kind != "Pod" {
            pod_security::template_warnings(store, namespace, &admitted.value).await?
        } else if pod_security::is_significant_pod_update(&old_value, &admitted.value) {
            pod_security::admit_pod(store, namespace, &admitted.value).await?
        } else {
            Vec::new()
        };
        admitted.warnings.extend(warnings);
    }
    let object = &mut admitted.value;
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_value.pointer(&format!("/metadata/{field}")) {
            Some(value) => set_meta(object, field, value.clone()),
            None => {
                crate::apiserver::objects::meta_mut(object).remove(field);
            }
        }
    }
    if old_value.get("spec") != object.get("spec") && object.get("spec").is_some() {
        let generation = old_value
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        set_meta(object, "generation", json!(generation + 1));
    }
    if dry_run {
        set_meta(
            object,
            "resourceVersion",
            json!(old.mod_revision.to_string()),
        );
        return Ok((admitted.value, admitted.warnings));
    }
    let store = &ctx.state.store;
    if is_terminating(object)
        && finalizers(object).is_empty()
        && !finalizers(&old_value).is_empty()
        && !grace_pending(object)
    {
        // This write removed the last finalizer: the object can now be removed. As in
        // Kubernetes' registry, a write to an object that had none (a pod's status while
        // its agent stops it) removes nothing, nor does one inside a pod's grace period:
        // a gracefully deleted pod goes only when its agent deletes it with grace 0.
        store
            .delete(&old.key, Some(old.mod_revision))
            .await
            .map_err(|e| store_error(ctx, e))?;
        return Ok((admitted.value, admitted.warnings));
    }
    if !old.stale && is_no_op(&old_value, object) {
        // As in Kubernetes, a write that changes nothing keeps the object's resourceVersion and
        // wakes no watcher; managedFields timestamps alone are not a change. A stale value
        // (encrypted with an older key) is still written: that re-encrypts it.
        return Ok((old_value, admitted.warnings));
    }
    let revision = store
        .update(&old.key, to_store(object), Some(old.mod_revision))
        .await
        .map_err(|e| store_error(ctx, e))?;
    set_meta(object, "resourceVersion", json!(revision.to_string()));
    Ok((admitted.value, admitted.warnings))
}

/// Whether the object's deletion waits for a grace period (`deletionGracePeriodSeconds` > 0).
fn grace_pending(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g > 0)
}

/// Whether `new` equals `old` but for its resourceVersion and managedFields timestamps.
fn is_no_op(old: &Value, new: &Value) -> bool {
    fn bookkeeping_stripped(value: &Value) -> Value {
        let mut value = value.clone();
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            if let Some(managers) = meta.get_mut("managedFields").and_then(Value::as_array_mut) {
                for manager in managers.iter_mut().filter_map(Value::as_object_mut) {
                    manager.remove("time");
                }
            }
        }
        value
    }
    bookkeeping_stripped(old) == bookkeeping_stripped(new)
}

/// Maps a write's store error to the API error Kubernetes returns for it.
pub fn store_error(ctx: &Ctx<'_>, error: StoreError) -> ApiError {
    let name = ctx.path.name.clone().unwrap_or_default();
    match error {
        StoreError::Conflict { .. } => ApiError::conflict(&ctx.resource(), &name),
        StoreError::NotFound { .. } => ApiError::not_found(&ctx.resource(), &name),
        other => other.into(),
    }
}
