//! Admission: turning a client's object into the one stored.
//!
//! The type fields and namespace must agree with the URL; the body is decoded into its typed
//! form (a wrong type is a 400 naming the field), unknown fields are refused, reported or
//! dropped per `fieldValidation`, defaults are filled in and the object is validated (a 422
//! `Invalid` Status with one cause per field; a Namespace's pod-security labels are
//! checked here too). Pod Security admission itself needs the namespace, so the handlers
//! call [`super::pod_security`] after this.

use coxswain_api::{defaulting, unknown_fields, validation};
use serde_json::{Value, json};

use super::objects::{meta_mut, meta_str};
use super::request::{Query, ResourcePath};
use super::status_error::ApiError;

/// What to do with fields the kind does not have (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse the request, naming every unknown field.
    Strict,
    /// Accept it and send one `Warning` header per unknown field (the default).
    Warn,
    /// Drop unknown fields silently.
    Ignore,
}

impl FieldValidation {
    /// The `fieldValidation` query parameter (`Warn` when absent).
    pub fn from_query(query: &Query) -> Result<Self, ApiError> {
        match query.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::BadRequest(format!(
                "query parameter fieldValidation: invalid value {other:?}: supported values: \
                 \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

/// An admitted object and the warnings to send with the response.
#[derive(Debug)]
pub struct Admitted {
    /// The object as it will be stored.
    pub value: Value,
    /// `Warning` headers (unknown fields under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
}

/// Checks `value` against the URL it was sent to, decodes, defaults and validates it.
pub fn admit(
    path: &ResourcePath,
    mut value: Value,
    field_validation: FieldValidation,
) -> Result<Admitted, ApiError> {
    let kind = path.kind;
    let Some(object) = value.as_object_mut() else {
        return Err(ApiError::BadRequest(format!(
            "the request body must be a {} object, not {}",
            kind.kind,
            type_name(&value)
        )));
    };
    for (field, expected) in [("apiVersion", kind.api_version), ("kind", kind.kind)] {
        match object.get(field) {
            None | Some(Value::Null) => {
                object.insert(field.to_string(), json!(expected));
            }
            Some(Value::String(given)) if given == expected => {}
            Some(given) => {
                return Err(ApiError::BadRequest(format!(
                    "{field}: the {field} in the body ({given}) does not match the expected \
                     {field} ({expected:?}) of this URL"
                )));
            }
        }
    }
    if !object.get("metadata").is_none_or(Value::is_object) {
        return Err(ApiError::BadRequest(
            "metadata: must be an object".to_string(),
        ));
    }
    let url_namespace = path.namespace.clone();
    let meta = meta_mut(&mut value);
    match (kind.namespaced, url_namespace) {
        (true, Some(ns)) => match meta.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != ns => {
                return Err(ApiError::BadRequest(format!(
                    "metadata.namespace: the namespace of the object ({given:?}) does not match \
                     the namespace of the URL ({ns:?})"
                )));
            }
            _ => {
                meta.insert("namespace".to_string(), json!(ns));
            }
        },
        (false, _) => {
            meta.remove("namespace");
        }
        (true, None) => {}
    }
    let name = meta_str(&value, "name")
        .or_else(|| meta_str(&value, "generateName"))
        .unwrap_or_default()
        .to_string();
    let mut object = coxswain_api::decode_value(value.clone()).map_err(|e| {
        ApiError::BadRequest(format!(
            "{} in version {:?} cannot be handled as a {}: {e}",
            kind.kind, kind.version, kind.kind
        ))
    })?;
    let mut warnings = Vec::new();
    if field_validation != FieldValidation::Ignore {
        let decoded = object
            .to_json_value()
            .map_err(|e| ApiError::Internal(format!("encoding {}: {e}", kind.kind)))?;
        let unknown: Vec<String> = unknown_fields(&value, &decoded)
            .into_iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        if !unknown.is_empty() {
            if field_validation == FieldValidation::Strict {
                return Err(ApiError::BadRequest(format!(
                    "strict decoding error: {}",
                    unknown.join(", ")
                )));
            }
            warnings = unknown;
        }
    }
    defaulting::apply_defaults(&mut object);
    let mut errors = validation::validate(&object);
    if kind.kind == "Namespace" {
        errors.extend(super::pod_security::validate_namespace_labels(&value));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            kind: kind.kind.to_string(),
            name,
            causes: errors,
        });
    }
    let value = object
        .to_json_value()
        .map_err(|e| ApiError::Internal(format!("encoding {}: {e}", kind.kind)))?;
    Ok(Admitted { value, warnings })
}

/// `a list`, `a string`, ... for error messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
