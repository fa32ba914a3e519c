//! Field paths and field errors, after `k8s.io/apimachinery/pkg/util/validation/field`.

use std::fmt;

use thiserror::Error;

/// A path to a field: `spec.replicaGroups[1].template.spec.containers[0]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at the top-level field `name`.
    pub fn new(name: &str) -> Self {
        FieldPath(name.to_string())
    }

    /// The path of field `name` inside this one.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            return FieldPath::new(name);
        }
        FieldPath(format!("{}.{name}", self.0))
    }

    /// The path of element `index` of this list.
    pub fn index(&self, index: usize) -> Self {
        FieldPath(format!("{}[{index}]", self.0))
    }

    /// The path of entry `key` of this map.
    pub fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{key}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of problem a [`FieldError`] reports, as in Kubernetes' `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorType {
    /// A required field is missing or empty.
    Required,
    /// The value is malformed or out of range.
    Invalid,
    /// The value is not one of the supported values.
    NotSupported,
    /// The value is too long.
    TooLong,
    /// The value repeats one that must be unique.
    Duplicate,
    /// The field may not be set here.
    Forbidden,
    /// The value refers to something that does not exist.
    NotFound,
}

impl FieldErrorType {
    /// Kubernetes' name for this error type (`FieldValueRequired`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::TooLong => "FieldValueTooLong",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Forbidden => "FieldValueForbidden",
            Self::NotFound => "FieldValueNotFound",
        }
    }
}

/// One problem with one field.
///
/// `message` follows one convention so that the API server can render Kubernetes'
/// wording by type (`spec.x: Invalid value: "v": detail`): messages of `Duplicate` and
/// `NotSupported` errors are complete (`Duplicate value: "x"`, `Unsupported value: ...`);
/// the others carry no type prefix, and start with the quoted bad value where it helps
/// (`"Web_1": a lowercase RFC 1123 subdomain must ...`). `Display` writes `path: message`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// Where the problem is.
    pub path: FieldPath,
    /// What kind of problem it is.
    pub error_type: FieldErrorType,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

impl FieldError {
    /// A problem of `error_type` at `path`.
    pub fn new(error_type: FieldErrorType, path: &FieldPath, message: impl Into<String>) -> Self {
        FieldError {
            path: path.clone(),
            error_type,
            message: message.into(),
        }
    }

    /// A required field is missing.
    pub fn required(path: &FieldPath, message: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Required, path, message)
    }

    /// A field's value is invalid.
    pub fn invalid(path: &FieldPath, message: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Invalid, path, message)
    }

    /// A field's value is not one of `supported`.
    pub fn not_supported(path: &FieldPath, value: &str, supported: &[&str]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Self::new(
            FieldErrorType::NotSupported,
            path,
            format!(
                "Unsupported value: \"{value}\": supported values: {}",
                quoted.join(", ")
            ),
        )
    }

    /// A field's value repeats an earlier one.
    pub fn duplicate(path: &FieldPath, value: &str) -> Self {
        Self::new(
            FieldErrorType::Duplicate,
            path,
            format!("Duplicate value: \"{value}\""),
        )
    }

    /// A field may not be set.
    pub fn forbidden(path: &FieldPath, message: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Forbidden, path, message)
    }

    /// A field refers to something missing.
    pub fn not_found(path: &FieldPath, message: impl Into<String>) -> Self {
        Self::new(FieldErrorType::NotFound, path, message)
    }
}

/// Every problem found in one object, as one error (messages joined by `; `).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ValidationError(pub Vec<FieldError>);

impl ValidationError {
    /// `Ok` when `errors` is empty, the error otherwise.
    pub fn check(errors: Vec<FieldError>) -> Result<(), ValidationError> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationError(errors))
        }
    }
}

/// Adds one [`FieldError::invalid`] per message in `messages` (from [`crate::names`]).
pub(crate) fn push_invalid(
    errors: &mut Vec<FieldError>,
    path: &FieldPath,
    value: &str,
    messages: Vec<String>,
) {
    for message in messages {
        errors.push(FieldError::invalid(path, format!("\"{value}\": {message}")));
    }
}
