//! `POST` to a collection: create an object, with `generateName`, defaulting and validation.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::Ctx;
use crate::apiserver::admission::{FieldValidation, admit};
use crate::apiserver::negotiate::{BodyType, body_type, parse_body, read_body, respond};
use crate::apiserver::objects::{
    generate_name, meta_mut, meta_str, new_uid, now, set_meta, to_store,
};
use crate::apiserver::status_error::ApiError;
use crate::apiserver::{pod_security, priority, service_account};
use crate::store::StoreError;

/// Serves `POST <resource>`.
pub async fn create(ctx: &Ctx<'_>, body: Body) -> Result<Response, ApiError> {
    let yaml = match body_type(&ctx.headers)? {
        BodyType::Json => false,
        BodyType::Yaml => true,
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "POST takes application/json or application/yaml; patch media types are for \
                 PATCH"
                    .to_string(),
            ));
        }
    };
    if ctx.path.subresource.is_some() || ctx.path.name.is_some() {
        return Err(ApiError::MethodNotAllowed(
            "POST creates objects in a collection: send it to the collection's URL".to_string(),
        ));
    }
    let field_validation = FieldValidation::from_query(&ctx.query)?;
    let dry_run = ctx.query.dry_run()?;
    let bytes = read_body(body).await?;
    let value = parse_body(&bytes, yaml)?;
    let (value, warnings) = create_value(ctx, value, field_validation, dry_run).await?;
    Ok(respond(
        StatusCode::CREATED,
        ctx.format_for_write(),
        &value,
        &warnings,
    ))
}

/// Admits `value` and stores it as a new object; shared with server-side apply.
pub async fn create_value(
    ctx: &Ctx<'_>,
    mut value: Value,
    field_validation: FieldValidation,
    dry_run: bool,
) -> Result<(Value, Vec<String>), ApiError> {
    if value.is_object() {
        let meta = meta_mut(&mut value);
        let has_name = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !has_name
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
            && !prefix.is_empty()
        {
            let name = generate_name(prefix);
            meta.insert("name".to_string(), json!(name));
        }
        for server_field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(server_field);
        }
    }
    let mut admitted = admit(&ctx.path, value, field_validation)?;
    let name = meta_str(&admitted.value, "name")
        .unwrap_or_default()
        .to_string();
    let kind = ctx.path.kind;
    if kind.namespaced {
        check_namespace(ctx).await?;
    }
    if kind.kind == "Pod" {
        priority::admit_pod(&*ctx.state.store, &mut admitted.value).await?;
        if ctx.state.service_accounts
            && let Some(namespace) = ctx.path.namespace.as_deref()
        {
            service_account::admit_pod(&*ctx.state.store, namespace, &mut admitted.value).await?;
        }
    }
    if let Some(namespace) = ctx.path.namespace.as_deref() {
        let store = &*ctx.state.store;
        let warnings = if kind.kind == "Pod" {
            pod_security::admit_pod(store, namespace, &admitted.value).await?
        } else {
            pod_security::template_warnings(store, namespace, &admitted.value).await?
        };
        admitted.warnings.extend(warnings);
    }
    let object = &mut admitted.value;
    set_meta(object, "uid", json!(new_uid()));
    set_meta(object, "creationTimestamp", json!(now()));
    if object.get("spec").is_some() {
        set_meta(object, "generation", json!(1));
    }
    match kind.kind {
        "Namespace" => object["status"] = json!({"phase": "Active"}),
        "Pod" if object.pointer("/status/phase").is_none() => {
            object["status"] = json!({"phase": "Pending"});
        }
        // As Kubernetes' CSR strategy: a request starts with no conditions and no
        // certificate, so nobody approves their own request by creating it approved.
        "CertificateSigningRequest" => {
            if let Some(object) = object.as_object_mut() {
                object.remove("status");
            }
        }
        _ => {}
    }
    let key = ctx.key_of(&name)?;
    if dry_run {
        return Ok((admitted.value, admitted.warnings));
    }
    let revision = ctx
        .state
        .store
        .create(&key, to_store(object))
        .await
        .map_err(|e| match e {
            StoreError::AlreadyExists { .. } => ApiError::AlreadyExists {
                resource: ctx.resource(),
                name: name.clone(),
            },
            other => other.into(),
        })?;
    set_meta(object, "resourceVersion", json!(revision.to_string()));
    Ok((admitted.value, admitted.warnings))
}

/// 404 when the URL's namespace does not exist, 403 while it is being deleted.
async fn check_namespace(ctx: &Ctx<'_>) -> Result<(), ApiError> {
    let Some(namespace) = ctx.path.namespace.as_deref() else {
        return Err(ApiError::BadRequest(format!(
            "{} is namespaced: create it under /namespaces/<namespace>/",
            ctx.path.kind.kind
        )));
    };
    let key = format!("/registry/core/namespaces/{namespace}");
    match ctx.state.store.get(&key).await? {
        None => Err(ApiError::not_found("namespaces", namespace)),
        Some(kv)
            if serde_json::from_slice::<Value>(&kv.value)
                .is_ok_and(|v| crate::apiserver::objects::is_terminating(&v)) =>
        {
            Err(ApiError::Forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being \
                 terminated"
            )))
        }
        Some(_) => Ok(()),
    }
}
