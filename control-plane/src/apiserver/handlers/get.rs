//! `GET` of one object (and of its `status` subresource).

use axum::http::StatusCode;
use axum::response::Response;

use super::Ctx;
use crate::apiserver::negotiate::{Format, respond};
use crate::apiserver::objects::from_store;
use crate::apiserver::status_error::ApiError;
use crate::apiserver::table::{self, IncludeObject};

/// Serves `GET <resource>/<name>`.
pub async fn get(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let kv = ctx.load().await?;
    let object = from_store(&kv)?;
    if ctx.format == Format::Table {
        let table = table::render(
            ctx.state,
            ctx.path.kind,
            IncludeObject::from_query(&ctx.query)?,
            &[object],
            kv.mod_revision,
            None,
        )
        .await?;
        return Ok(respond(StatusCode::OK, Format::Json, &table, &[]));
    }
    Ok(respond(StatusCode::OK, ctx.format, &object, &[]))
}
