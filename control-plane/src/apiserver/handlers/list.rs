//! `GET` of a collection: one page of a list, filtered by label and field selectors.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::Ctx;
use crate::apiserver::negotiate::{Format, respond};
use crate::apiserver::objects::from_store;
use crate::apiserver::selectors::Selectors;
use crate::apiserver::status_error::ApiError;
use crate::apiserver::table::{self, IncludeObject};
use crate::store::ListOptions;

/// Serves `GET <resource>` (one namespace or all of them).
pub async fn list(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let selectors = Selectors::from_query(&ctx.query)?;
    ctx.query.resource_version()?;
    let limit = ctx.query.number("limit")?.unwrap_or(0);
    let options = ListOptions {
        limit: usize::try_from(limit).unwrap_or(usize::MAX),
        continue_token: ctx
            .query
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    };
    let page = ctx.state.store.list(&ctx.prefix()?, options).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for kv in &page.items {
        let object = from_store(kv)?;
        if selectors.matches(&object) {
            items.push(object);
        }
    }
    if ctx.format == Format::Table {
        let table = table::render(
            ctx.state,
            ctx.path.kind,
            IncludeObject::from_query(&ctx.query)?,
            &items,
            page.revision,
            page.continue_token.as_deref(),
        )
        .await?;
        return Ok(respond(StatusCode::OK, Format::Json, &table, &[]));
    }
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = &page.continue_token {
        metadata["continue"] = json!(token);
    }
    let list = json!({
        "kind": format!("{}List", ctx.path.kind.kind),
        "apiVersion": ctx.path.kind.api_version,
        "metadata": metadata,
        "items": Value::Array(items),
    });
    Ok(respond(StatusCode::OK, ctx.format, &list, &[]))
}
