//! API errors and their wire form: a Kubernetes `Status` object with reason, code and causes.
//!
//! Every handler returns [`ApiError`]; its [`axum::response::IntoResponse`] writes the `Status`
//! body Kubernetes clients parse (`kubectl` prints `message`, client-go switches on `reason`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use coxswain_api::FieldError;
use serde_json::{Value, json};

use crate::store::StoreError;

/// What a request failed with, mapped to an HTTP status and a `Status` reason.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 403: the request is understood but refused.
    #[error("{0}")]
    Forbidden(String),
    /// 404: the object or path does not exist.
    #[error("{message}")]
    NotFound {
        /// The message, `pods "web" not found`.
        message: String,
        /// The object's name, when the request named one.
        name: Option<String>,
        /// The resource (`pods`).
        kind: Option<String>,
    },
    /// 405: the verb is not supported on this path.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 406: no acceptable response format.
    #[error("{0}")]
    NotAcceptable(String),
    /// 409: create of an object that exists.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// The resource (`pods`).
        resource: String,
        /// The object's name.
        name: String,
    },
    /// 409: the object changed since the client read it.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {reason}")]
    Conflict {
        /// The resource (`pods`).
        resource: String,
        /// The object's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// 410: the resource version asked for is gone.
    #[error("{0}")]
    Gone(String),
    /// 413: the body is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415: the body's media type is not supported.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: the object is invalid; one cause per field.
    #[error("{kind} \"{name}\" is invalid: {}", join_causes(.causes))]
    Invalid {
        /// The kind (`Pod`).
        kind: String,
        /// The object's name.
        name: String,
        /// Every problem, with its field path.
        causes: Vec<FieldError>,
    },
    /// 504: the request could not be served in time (e.g. a future resource version).
    #[error("{0}")]
    Timeout(String),
    /// 500: the server failed.
    #[error("{0}")]
    Internal(String),
    /// 503: a component the request needs (a node's agent) cannot be reached.
    #[error("{0}")]
    ServiceUnavailable(String),
}

fn join_causes(causes: &[FieldError]) -> String {
    let parts: Vec<String> = causes.iter().map(field_message).collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

/// `spec.x: Required value: message`, as Kubernetes writes field errors.
fn field_message(error: &FieldError) -> String {
    use coxswain_api::FieldErrorType as T;
    let prefix = match error.error_type {
        T::Required => "Required value",
        T::Invalid => "Invalid value",
        T::NotSupported | T::Duplicate => "",
        T::TooLong => "Too long",
        T::Forbidden => "Forbidden",
        T::NotFound => "Not found",
    };
    match prefix {
        "" => format!("{}: {}", error.path, error.message),
        _ => format!("{}: {prefix}: {}", error.path, error.message),
    }
}

impl ApiError {
    /// A 404 for object `name` of `resource`.
    pub fn not_found(resource: &str, name: &str) -> Self {
        ApiError::NotFound {
            message: format!("{resource} \"{name}\" not found"),
            name: Some(name.to_string()),
            kind: Some(resource.to_string()),
        }
    }

    /// A 404 for a path that serves nothing.
    pub fn no_route(path: &str) -> Self {
        ApiError::NotFound {
            message: format!("the server could not find the requested resource ({path})"),
            name: None,
            kind: None,
        }
    }

    /// A 409 for a lost compare-and-swap on `name`.
    pub fn conflict(resource: &str, name: &str) -> Self {
        ApiError::Conflict {
            resource: resource.to_string(),
            name: name.to_string(),
            reason: "the object has been modified; please apply your changes to the latest \
                     version and try again"
                .to_string(),
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `Status.reason` Kubernetes uses for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound { .. } => "NotFound",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Gone(_) => "Expired",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::Timeout(_) => "Timeout",
            ApiError::Internal(_) => "InternalError",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
        }
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        let details = match self {
            ApiError::NotFound {
                name: Some(name),
                kind,
                ..
            } => Some(json!({"name": name, "kind": kind})),
            ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. } => {
                Some(json!({"name": name, "kind": resource}))
            }
            ApiError::Invalid { kind, name, causes } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| {
                        json!({
                            "reason": c.error_type.reason(),
                            "message": field_message(c),
                            "field": c.path.as_str(),
                        })
                    })
                    .collect();
                Some(json!({"name": name, "kind": kind, "causes": causes}))
            }
            _ => None,
        };
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Expired { .. } => {
                ApiError::Gone(format!("too old resource version: {error}"))
            }
            StoreError::FutureRevision { requested, current } => ApiError::Timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            StoreError::InvalidContinue { .. } => ApiError::BadRequest(error.to_string()),
            StoreError::TooLarge { size, limit, .. } => ApiError::TooLarge(format!(
                "object is {size} bytes when stored, over the limit of {limit} bytes"
            )),
            _ => ApiError::Internal(error.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Internal(_)) {
            tracing::error!(error = %self, "internal error");
        }
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        (
            self.code(),
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}
