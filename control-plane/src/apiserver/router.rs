//! Routing: every request goes through [`dispatch`], which parses the path and picks a handler.
//!
//! Resource paths are generic over the registry's kinds, so they are parsed by
//! [`super::request::parse_path`] rather than declared one by one.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ApiState;
use super::csr_approval;
use super::discovery;
use super::handlers::{Ctx, create, delete, get, list, log, patch, update, watch};
use super::negotiate::{Format, accepted_format, respond};
use super::openapi;
use super::request::{ApiPath, Query, parse_path};
use super::status_error::ApiError;
use super::{node_proxy, resource_metrics};

/// The API's router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .fallback(dispatch)
        .layer(crate::metrics::router_layer(state.metrics.clone()))
        .with_state(state)
}

async fn dispatch(State(state): State<ApiState>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = match route(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), "request");
    response
}

fn json(value: &Value) -> Result<Response, ApiError> {
    Ok(respond(StatusCode::OK, Format::Json, value, &[]))
}

async fn route(state: &ApiState, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let read_only = |m: &Method| matches!(*m, Method::GET | Method::HEAD);
    match path {
        "/version" | "/version/" => return json(&discovery::version()),
        "/healthz" | "/livez" | "/readyz" => return Ok((StatusCode::OK, "ok").into_response()),
        p if p == "/openapi/v3" || p.starts_with("/openapi/v3/") => {
            return json(&openapi::serve(p)?);
        }
        _ => {}
    }
    if let Some(served) = resource_metrics::serve(
        &*state.store,
        &state.resource_metrics,
        &parts.method,
        path,
        parts.uri.query(),
    )
    .await
    {
        return served;
    }
    if let Some((node, target)) = node_proxy::parse(path) {
        let query = parts.uri.query();
        return node_proxy::serve(&*state.store, &parts.method, &node, &target, query).await;
    }
    let Some(api_path) = parse_path(path)? else {
        return Err(ApiError::no_route(path));
    };
    if !matches!(api_path, ApiPath::Resource(_)) && !read_only(&parts.method) {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} is not supported on {path}",
            parts.method
        )));
    }
    match api_path {
        ApiPath::CoreVersions => {
            let host = parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            json(&discovery::core_versions(host))
        }
        ApiPath::Groups => json(&discovery::group_list()),
        ApiPath::Group(group) => json(&discovery::group(&group)?),
        ApiPath::Resources { group, version } => json(&discovery::resource_list(&group, &version)?),
        ApiPath::Resource(resource) => {
            let format = accepted_format(&parts.headers)?;
            let ctx = Ctx {
                state,
                query: Query::parse(parts.uri.query()),
                headers: parts.headers,
                path: resource,
                format,
            };
            if csr_approval::is_approval(&ctx.path)
                && matches!(parts.method, Method::PUT | Method::PATCH)
            {
                csr_approval::admit_approver(&parts.extensions, &ctx).await?;
            }
            serve_resource(&ctx, parts.method, body).await
        }
    }
}

async fn serve_resource(ctx: &Ctx<'_>, method: Method, body: Body) -> Result<Response, ApiError> {
    let named = ctx.path.name.is_some();
    if ctx.path.subresource.as_deref() == Some("log") {
        return match method {
            Method::GET => log::log(ctx).await,
            other => Err(ApiError::MethodNotAllowed(format!(
                "{other} is not supported on the log of a pod (use GET)"
            ))),
        };
    }
    match (method, named) {
        (Method::GET, false) if ctx.query.flag("watch")? => watch::watch(ctx).await,
        (Method::GET, false) => list::list(ctx).await,
        (Method::GET, true) => get::get(ctx).await,
        (Method::POST, false) => create::create(ctx, body).await,
        (Method::PUT, true) => update::update(ctx, body).await,
        (Method::PATCH, true) => patch::patch(ctx, body).await,
        (Method::DELETE, true) => delete::delete(ctx, body).await,
        (method, named) => {
            let (what, hint) = match (named, method.clone()) {
                (true, Method::POST) => (
                    "an object",
                    " (create objects by POSTing to the collection)",
                ),
                (true, _) => ("an object", ""),
                (false, _) => ("a collection", " (name the object in the URL)"),
            };
            Err(ApiError::MethodNotAllowed(format!(
                "{method} is not supported on {what} of {}{hint}",
                ctx.resource()
            )))
        }
    }
}
