//! Content negotiation: which body formats a request may send and which a client accepts.
//!
//! Bodies are JSON or YAML (and, for PATCH, the patch media types); responses are JSON, YAML
//! or a server-side `Table`. Protobuf is never served: clients that list it next to JSON
//! (kubectl, client-go) get JSON.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use super::status_error::ApiError;

/// The largest request body accepted: 3 MiB, as Kubernetes.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// A response format a client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `application/yaml`.
    Yaml,
    /// `application/json;as=Table;g=meta.k8s.io;v=v1`.
    Table,
}

/// The response format for `headers`' `Accept`: the first one served, JSON when absent.
pub fn accepted_format(headers: &HeaderMap) -> Result<Format, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(Format::Json);
    };
    let accept = accept
        .to_str()
        .map_err(|_| ApiError::NotAcceptable("Accept header is not valid text".to_string()))?;
    if accept.trim().is_empty() {
        return Ok(Format::Json);
    }
    for candidate in accept.split(',') {
        let mut parts = candidate.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let param = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        match (media.as_str(), param("as")) {
            ("application/json", Some("Table"))
                if param("g") == Some("meta.k8s.io")
                    && matches!(param("v"), Some("v1") | Some("v1beta1")) =>
            {
                return Ok(Format::Table);
            }
            ("application/json" | "*/*" | "application/*", None) => return Ok(Format::Json),
            ("application/yaml" | "application/x-yaml" | "text/yaml", None) => {
                return Ok(Format::Yaml);
            }
            _ => {}
        }
    }
    Err(ApiError::NotAcceptable(format!(
        "only the following media types are accepted: application/json, application/yaml, \
         application/json;as=Table;v=v1;g=meta.k8s.io (got {accept:?})"
    )))
}

/// The media type of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    /// `application/json`.
    Json,
    /// `application/yaml`.
    Yaml,
    /// `application/merge-patch+json`.
    MergePatch,
    /// `application/json-patch+json`.
    JsonPatch,
    /// `application/strategic-merge-patch+json`.
    StrategicMergePatch,
    /// `application/apply-patch+yaml`.
    ApplyPatch,
}

/// The body type from `Content-Type` (JSON when absent).
pub fn body_type(headers: &HeaderMap) -> Result<BodyType, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyType::Json);
    };
    let text = value.to_str().unwrap_or_default();
    let media = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Ok(match media.as_str() {
        "application/json" | "" => BodyType::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => BodyType::Yaml,
        "application/merge-patch+json" => BodyType::MergePatch,
        "application/json-patch+json" => BodyType::JsonPatch,
        "application/strategic-merge-patch+json" => BodyType::StrategicMergePatch,
        "application/apply-patch+yaml" => BodyType::ApplyPatch,
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format {text:?}: accepted media types \
                 are application/json, application/yaml, application/merge-patch+json, \
                 application/json-patch+json, application/strategic-merge-patch+json, \
                 application/apply-patch+yaml"
            )));
        }
    })
}

/// Reads the body, refusing more than [`MAX_BODY_BYTES`] with 413.
pub async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            ApiError::TooLarge(format!(
                "the request body is too large: the limit is {MAX_BODY_BYTES} bytes ({e})"
            ))
        })
}

/// Parses a JSON or YAML body into a value (one document).
pub fn parse_body(bytes: &[u8], yaml: bool) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the request body is empty".to_string(),
        ));
    }
    if yaml {
        let value: Value = yaml_serde::from_slice(bytes).map_err(|e| {
            ApiError::BadRequest(format!("the request body is not valid YAML: {e}"))
        })?;
        Ok(value)
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
    }
}

/// Writes `value` in `format` (a table is already a JSON value) with `status`.
pub fn respond(status: StatusCode, format: Format, value: &Value, warnings: &[String]) -> Response {
    let (content_type, body) = match format {
        Format::Yaml => (
            "application/yaml",
            yaml_serde::to_string(value)
                .unwrap_or_default()
                .into_bytes(),
        ),
        Format::Json | Format::Table => (
            "application/json",
            serde_json::to_vec(value).unwrap_or_default(),
        ),
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_default();
    add_warnings(response.headers_mut(), warnings);
    response
}

/// Adds one `Warning: 299 - "..."` header per warning.
pub fn add_warnings(headers: &mut HeaderMap, warnings: &[String]) {
    for warning in warnings {
        let text = format!("299 - {:?}", warning.replace('"', "'"));
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.append(header::WARNING, value);
        }
    }
}
