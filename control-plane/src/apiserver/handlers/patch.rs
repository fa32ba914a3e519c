//! `PATCH`: JSON merge patch, JSON patch (RFC 6902), strategic merge patch, and server-side
//! apply (see [`crate::apiserver::apply`]).
//!
//! A patch is applied to the current object and the result goes through the same admission and
//! compare-and-swap as `PUT`; a lost race is retried against the new state unless the patch
//! itself pinned a `resourceVersion`.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;

use super::Ctx;
use super::update::write_update;
use crate::apiserver::admission::FieldValidation;
use crate::apiserver::apply;
use crate::apiserver::negotiate::{BodyType, body_type, parse_body, read_body, respond};
use crate::apiserver::objects::{from_store, meta_str};
use crate::apiserver::request::parse_resource_version;
use crate::apiserver::status_error::ApiError;
use crate::apiserver::strategic_merge;

/// How often a patch is re-applied after losing a race with another writer.
const RETRIES: usize = 5;

/// Serves `PATCH <resource>/<name>[/status]`.
pub async fn patch(ctx: &Ctx<'_>, body: Body) -> Result<Response, ApiError> {
    let body_type = body_type(&ctx.headers)?;
    if matches!(body_type, BodyType::Json | BodyType::Yaml) {
        return Err(ApiError::UnsupportedMediaType(
            "PATCH needs one of application/merge-patch+json, application/json-patch+json, \
             application/strategic-merge-patch+json, application/apply-patch+yaml"
                .to_string(),
        ));
    }
    let field_validation = FieldValidation::from_query(&ctx.query)?;
    let dry_run = ctx.query.dry_run()?;
    let bytes = read_body(body).await?;
    if body_type == BodyType::ApplyPatch {
        return apply::apply(ctx, &bytes, field_validation, dry_run).await;
    }
    let patch = parse_body(&bytes, false)?;
    let json_patch = match body_type {
        BodyType::JsonPatch => Some(
            serde_json::from_value::<json_patch::Patch>(patch.clone())
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}")))?,
        ),
        _ => None,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let old = ctx.load().await?;
        let mut doc = from_store(&old)?;
        match (&json_patch, body_type) {
            (Some(operations), _) => json_patch::patch(&mut doc, operations)
                .map_err(|e| ApiError::BadRequest(format!("JSON patch failed: {e}")))?,
            (None, BodyType::MergePatch) => json_patch::merge(&mut doc, &patch),
            (None, _) => strategic_merge::apply(&mut doc, &patch)?,
        }
        let pinned = match meta_str(&doc, "resourceVersion") {
            Some(rv) if !rv.is_empty() => parse_resource_version(rv)?,
            _ => old.mod_revision,
        };
        let result = write_update(ctx, &old, doc, Some(pinned), field_validation, dry_run).await;
        match result {
            Err(ApiError::Conflict { .. }) if pinned == old.mod_revision && attempt < RETRIES => {
                continue;
            }
            Err(error) => return Err(error),
            Ok((object, warnings)) => {
                return Ok(respond(
                    StatusCode::OK,
                    ctx.format_for_write(),
                    &object,
                    &warnings,
                ));
            }
        }
    }
}
