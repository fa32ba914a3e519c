//! Decoding objects from bytes: JSON, or YAML with one or many documents.
//!
//! Decoding reads `apiVersion` and `kind` first, looks the kind up in the
//! [`crate::registry`], then decodes the typed object, so errors name the document,
//! the field path and, where the parser knows it, the line and column. Empty YAML
//! documents (a trailing `---`) are skipped. Unknown fields are ignored here; see
//! [`crate::unknown_fields`] to find them.

use serde::Deserialize;
use thiserror::Error;

use crate::object::{DocumentSource, Object, decode_kind};

mod source;

use crate::registry::{self, KindInfo};
use source::{FieldError, JsonSource, ValueSource, YamlSource};

/// Why bytes could not be decoded into objects. Documents are numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The bytes are not well-formed JSON or YAML.
    #[error("document {document}: {message}")]
    Syntax {
        /// Which document.
        document: usize,
        /// Line of the error (1-based), when known.
        line: Option<usize>,
        /// Column of the error (1-based), when known.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A document is not a mapping/object.
    #[error("document {document}: expected an object with apiVersion and kind, found {found}")]
    NotAnObject {
        /// Which document.
        document: usize,
        /// What was found instead (`a list`, `a string`, ...).
        found: &'static str,
    },
    /// `apiVersion` or `kind` is missing or not a string.
    #[error("document {document}: {field}: required (a string)")]
    MissingTypeField {
        /// Which document.
        document: usize,
        /// `apiVersion` or `kind`.
        field: &'static str,
    },
    /// No registered kind has this `apiVersion` and kind.
    #[error(
        "document {document}: no kind {kind:?} is served in {api_version:?} \
         (docs/api.md lists the kinds coxswain serves)"
    )]
    UnknownKind {
        /// Which document.
        document: usize,
        /// The document's `apiVersion`.
        api_version: String,
        /// The document's kind.
        kind: String,
    },
    /// A field has the wrong type or value for its kind.
    #[error("document {document}: {message}")]
    Field {
        /// Which document.
        document: usize,
        /// The field path (`spec.replicaGroups[0].replicas`), when known separately.
        path: Option<String>,
        /// Line of the error (1-based), when known.
        line: Option<usize>,
        /// The decoder's message, naming the field.
        message: String,
    },
    /// The input holds no object, or more than the one expected.
    #[error("expected exactly one object, found {0}")]
    WrongCount(usize),
}

/// Decodes every object in `bytes`: a JSON object, or YAML with any number of documents.
pub fn decode(bytes: &[u8]) -> Result<Vec<Object>, DecodeError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return decode_yaml(bytes);
    }
    match decode_json(bytes) {
        Ok(object) => Ok(vec![object]),
        // `{apiVersion: v1, ...}` is a YAML flow mapping, not JSON: try YAML before
        // reporting the JSON syntax error.
        Err(json_error @ DecodeError::Syntax { .. }) => decode_yaml(bytes).map_err(|_| json_error),
        Err(other) => Err(other),
    }
}

/// Decodes exactly one object from `bytes` (JSON, or a single YAML document).
pub fn decode_one(bytes: &[u8]) -> Result<Object, DecodeError> {
    let mut objects = decode(bytes)?;
    match objects.len() {
        1 => Ok(objects.remove(0)),
        n => Err(DecodeError::WrongCount(n)),
    }
}

/// Decodes one object from a JSON value (the API server parses bodies to values first
/// to look for unknown fields).
pub fn decode_value(value: serde_json::Value) -> Result<Object, DecodeError> {
    let info = type_meta_json(&value, 1)?;
    dispatch(info, 1, ValueSource(value))
}

fn decode_json(bytes: &[u8]) -> Result<Object, DecodeError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Syntax {
            document: 1,
            line: Some(e.line()),
            column: Some(e.column()),
            message: e.to_string(),
        })?;
    let info = type_meta_json(&value, 1)?;
    dispatch(info, 1, JsonSource(bytes))
}

fn decode_yaml(bytes: &[u8]) -> Result<Vec<Object>, DecodeError> {
    // Pass 1 reads each document's type; pass 2 decodes it typed, so that type errors
    // carry the field path and line from the YAML parser.
    let mut kinds = Vec::new();
    for (index, document) in yaml_serde::Deserializer::from_slice(bytes).enumerate() {
        let value =
            yaml_serde::Value::deserialize(document).map_err(|e| yaml_error(e, index + 1))?;
        kinds.push(type_meta_yaml(&value, index + 1)?);
    }
    let mut objects = Vec::new();
    for (index, document) in yaml_serde::Deserializer::from_slice(bytes).enumerate() {
        if let Some(Some(info)) = kinds.get(index) {
            objects.push(dispatch(info, index + 1, YamlSource(document))?);
        }
    }
    Ok(objects)
}

fn dispatch<S>(info: &'static KindInfo, document: usize, source: S) -> Result<Object, DecodeError>
where
    S: DocumentSource<Error = FieldError>,
{
    match decode_kind(info, source) {
        Some(result) => result.map_err(|e| e.into_decode_error(document)),
        None => Err(DecodeError::UnknownKind {
            document,
            api_version: info.api_version.to_string(),
            kind: info.kind.to_string(),
        }),
    }
}

fn type_meta_json(
    value: &serde_json::Value,
    document: usize,
) -> Result<&'static KindInfo, DecodeError> {
    use serde_json::Value;
    let map = match value {
        Value::Object(map) => map,
        other => {
            let found = match other {
                Value::Array(_) => "a list",
                Value::String(_) => "a string",
                Value::Null => "null",
                _ => "a scalar",
            };
            return Err(DecodeError::NotAnObject { document, found });
        }
    };
    let field = |name: &'static str| {
        map.get(name)
            .and_then(Value::as_str)
            .ok_or(DecodeError::MissingTypeField {
                document,
                field: name,
            })
    };
    lookup(field("apiVersion")?, field("kind")?, document)
}

/// The kind of a YAML document; `None` for an empty document.
fn type_meta_yaml(
    value: &yaml_serde::Value,
    document: usize,
) -> Result<Option<&'static KindInfo>, DecodeError> {
    use yaml_serde::Value;
    let map = match value {
        Value::Null => return Ok(None),
        Value::Mapping(map) => map,
        other => {
            let found = match other {
                Value::Sequence(_) => "a list",
                Value::String(_) => "a string",
                Value::Tagged(_) => "a tagged value",
                _ => "a scalar",
            };
            return Err(DecodeError::NotAnObject { document, found });
        }
    };
    let field = |name: &'static str| {
        map.get(name)
            .and_then(Value::as_str)
            .ok_or(DecodeError::MissingTypeField {
                document,
                field: name,
            })
    };
    lookup(field("apiVersion")?, field("kind")?, document).map(Some)
}

fn lookup(
    api_version: &str,
    kind: &str,
    document: usize,
) -> Result<&'static KindInfo, DecodeError> {
    registry::lookup(api_version, kind).ok_or_else(|| DecodeError::UnknownKind {
        document,
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    })
}

fn yaml_error(error: yaml_serde::Error, document: usize) -> DecodeError {
    let location = error.location();
    DecodeError::Syntax {
        document,
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        message: error.to_string(),
    }
}

impl<'de> serde::Deserialize<'de> for Object {
    /// Decodes any registered kind, dispatching on `apiVersion` and `kind`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        decode_value(value).map_err(serde::de::Error::custom)
    }
}
