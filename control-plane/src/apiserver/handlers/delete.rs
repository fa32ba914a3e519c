//! `DELETE` of an object: preconditions, finalizers (a `deletionTimestamp` instead of removal),
//! `propagationPolicy` (recorded as the `orphan` / `foregroundDeletion` finalizer for the
//! garbage collector), graceful deletion of pods bound to a node, and namespace cascade.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use coxswain_api::registry::{KINDS, KindInfo};
use serde_json::{Value, json};

use super::Ctx;
use super::update::store_error;
use crate::apiserver::ApiState;
use crate::apiserver::negotiate::{parse_body, read_body, respond};
use crate::apiserver::objects::{
    finalizers, from_store, is_terminating, meta_str, now, now_plus, set_meta, to_store,
};
use crate::apiserver::status_error::ApiError;
use crate::store::{KeyValue, ListOptions, StoreError};

/// Namespaces that may not be deleted.
const PROTECTED_NAMESPACES: &[&str] = &["default", "coxswain-system", "kube-system"];

/// What a delete request asks for (`DeleteOptions`, from the body and the query).
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    grace_period_seconds: Option<i64>,
    propagation_policy: Option<String>,
    precondition_uid: Option<String>,
    precondition_resource_version: Option<String>,
    dry_run: bool,
}

impl DeleteOptions {
    fn parse(ctx: &Ctx<'_>, body: &[u8]) -> Result<Self, ApiError> {
        let mut options = DeleteOptions {
            dry_run: ctx.query.dry_run()?,
            ..Default::default()
        };
        if !body.iter().all(u8::is_ascii_whitespace) {
            let value = parse_body(body, body.first() != Some(&b'{'))?;
            options.grace_period_seconds = value.get("gracePeriodSeconds").and_then(Value::as_i64);
            options.propagation_policy = value
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string);
            options.precondition_uid = value
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string);
            options.precondition_resource_version = value
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            if value
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
            {
                options.dry_run = true;
            }
        }
        if let Some(grace) = ctx.query.get("gracePeriodSeconds") {
            options.grace_period_seconds = Some(grace.parse().map_err(|_| {
                ApiError::BadRequest(format!(
                    "query parameter gracePeriodSeconds: invalid integer {grace:?}"
                ))
            })?);
        }
        if let Some(policy) = ctx.query.get("propagationPolicy") {
            options.propagation_policy = Some(policy.to_string());
        }
        match options.propagation_policy.as_deref() {
            None | Some("Orphan" | "Background" | "Foreground") => Ok(options),
            Some(other) => Err(ApiError::BadRequest(format!(
                "propagationPolicy: unsupported value {other:?}: supported values: \"Orphan\", \
                 \"Background\", \"Foreground\""
            ))),
        }
    }
}

/// Serves `DELETE <resource>/<name>`.
pub async fn delete(ctx: &Ctx<'_>, body: Body) -> Result<Response, ApiError> {
    if ctx.path.subresource.is_some() {
        return Err(ApiError::MethodNotAllowed(
            "DELETE is not supported on subresources".to_string(),
        ));
    }
    let bytes = read_body(body).await?;
    let options = DeleteOptions::parse(ctx, &bytes)?;
    let kv = ctx.load().await?;
    let object = from_store(&kv)?;
    let uid = meta_str(&object, "uid").unwrap_or_default();
    if let Some(expected) = &options.precondition_uid
        && expected != uid
    {
        return Err(precondition(
            ctx,
            format!("UID in precondition: {expected}, UID in object meta: {uid}"),
        ));
    }
    if let Some(expected) = &options.precondition_resource_version
        && *expected != kv.mod_revision.to_string()
    {
        return Err(precondition(
            ctx,
            format!(
                "ResourceVersion in precondition: {expected}, ResourceVersion in object meta: {}",
                kv.mod_revision
            ),
        ));
    }
    let kind = ctx.path.kind;
    if kind.kind == "Namespace" {
        let name = ctx.name()?;
        if PROTECTED_NAMESPACES.contains(&name) {
            return Err(ApiError::Forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        if !options.dry_run {
            let remaining = delete_namespace_content(ctx.state, name).await?;
            if remaining > 0 {
                let mut object = object;
                set_meta(&mut object, "deletionTimestamp", json!(now()));
                object["status"] = json!({"phase": "Terminating"});
                let rev = ctx
                    .state
                    .store
                    .update(&kv.key, to_store(&object), Some(kv.mod_revision))
                    .await
                    .map_err(|e| store_error(ctx, e))?;
                set_meta(&mut object, "resourceVersion", json!(rev.to_string()));
                return Ok(respond(
                    StatusCode::ACCEPTED,
                    ctx.format_for_write(),
                    &object,
                    &[],
                ));
            }
        }
    }
    // A write that lands between the read and the delete (a controller's status update) is
    // retried on the new revision, as Kubernetes does, unless the client pinned a
    // resourceVersion.
    let mut kv = kv;
    let mut attempts = 0;
    let (status, object) = loop {
        match delete_object(ctx.state, kind, &kv, &options).await {
            Err(StoreError::Conflict { .. })
                if options.precondition_resource_version.is_none() && attempts < 5 =>
            {
                attempts += 1;
                kv = ctx.load().await?;
                if let Some(expected) = &options.precondition_uid
                    && meta_str(&from_store(&kv)?, "uid") != Some(expected.as_str())
                {
                    return Err(precondition(
                        ctx,
                        format!("UID in precondition: {expected}, UID in object meta: changed"),
                    ));
                }
            }
            other => break other.map_err(|e| store_error(ctx, e))?,
        }
    };
    Ok(respond(status, ctx.format_for_write(), &object, &[]))
}

fn precondition(ctx: &Ctx<'_>, detail: String) -> ApiError {
    ApiError::Conflict {
        resource: ctx.resource(),
        name: ctx.path.name.clone().unwrap_or_default(),
        reason: format!("Precondition failed: {detail}"),
    }
}

/// Deletes one stored object, or marks it for deletion when finalizers or a grace period
/// hold it. Returns 200 and the removed object, or 202 and the object now terminating.
async fn delete_object(
    state: &ApiState,
    kind: &KindInfo,
    kv: &KeyValue,
    options: &DeleteOptions,
) -> Result<(StatusCode, Value), StoreError> {
    let mut object = from_store(kv).unwrap_or(Value::Null);
    let mut pending = finalizers(&object);
    let gc_finalizer = match options.propagation_policy.as_deref() {
        Some("Orphan") => Some("orphan"),
        Some("Foreground") => Some("foregroundDeletion"),
        _ => None,
    };
    if let Some(finalizer) = gc_finalizer
        && !pending.iter().any(|f| f == finalizer)
    {
        pending.push(finalizer.to_string());
    }
    let grace = graceful_pod_seconds(kind, &object, options);
    if pending.is_empty() && grace.is_none() {
        if !options.dry_run {
            state.store.delete(&kv.key, Some(kv.mod_revision)).await?;
        }
        return Ok((StatusCode::OK, object));
    }
    if !is_terminating(&object) {
        let grace = grace.unwrap_or(0);
        set_meta(&mut object, "deletionTimestamp", json!(now_plus(grace)));
        set_meta(&mut object, "deletionGracePeriodSeconds", json!(grace));
    }
    set_meta(&mut object, "finalizers", json!(pending));
    if !options.dry_run {
        let rev = state
            .store
            .update(&kv.key, to_store(&object), Some(kv.mod_revision))
            .await?;
        set_meta(&mut object, "resourceVersion", json!(rev.to_string()));
    }
    Ok((StatusCode::ACCEPTED, object))
}

/// The grace period of a pod bound to a node that is not being deleted yet; its agent stops the
/// containers and then deletes it with grace 0. Unbound pods go at once.
///
/// A pod already terminating stays with its agent: deleting it again (a garbage collector, a
/// second `kubectl delete`) changes nothing, as in Kubernetes; only an explicit grace period of
/// 0 (`--grace-period=0 --force`, or the agent's own final delete) removes it at once.
fn graceful_pod_seconds(kind: &KindInfo, pod: &Value, options: &DeleteOptions) -> Option<i64> {
    if kind.kind != "Pod" {
        return None;
    }
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())?;
    if is_terminating(pod) {
        return (options.grace_period_seconds != Some(0)).then(|| {
            pod.pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        });
    }
    let grace = options.grace_period_seconds.or_else(|| {
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
    })?;
    (grace > 0).then_some(grace)
}

/// Deletes every namespaced object in `namespace`; returns how many remain (held by finalizers
/// or terminating gracefully).
async fn delete_namespace_content(state: &ApiState, namespace: &str) -> Result<usize, ApiError> {
    let mut remaining = 0;
    for kind in KINDS.iter().filter(|k| k.namespaced) {
        let prefix = kind
            .store_prefix(Some(namespace))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let mut options = ListOptions::default();
        loop {
            let page = state.store.list(&prefix, options.clone()).await?;
            for kv in &page.items {
                match delete_object(state, kind, kv, &DeleteOptions::default()).await {
                    Ok((StatusCode::OK, _)) | Err(StoreError::NotFound { .. }) => {}
                    Ok(_) | Err(StoreError::Conflict { .. }) => remaining += 1,
                    Err(other) => return Err(other.into()),
                }
            }
            match page.continue_token {
                Some(token) => options.continue_token = Some(token),
                None => break,
            }
        }
    }
    Ok(remaining)
}
