//! Where typed decoding reads a document from: a YAML document, JSON bytes, a JSON value.
//!
//! Each source turns the decoder's error into a [`FieldError`] naming the field path and,
//! where the parser knows it, the line.

use serde::de::DeserializeOwned;

use super::DecodeError;
use crate::object::DocumentSource;

/// A typed-decoding failure before the document number is known.
pub(crate) struct FieldError {
    path: Option<String>,
    line: Option<usize>,
    message: String,
}

impl FieldError {
    pub(super) fn into_decode_error(self, document: usize) -> DecodeError {
        DecodeError::Field {
            document,
            path: self.path,
            line: self.line,
            message: self.message,
        }
    }

    fn from_path<E: std::fmt::Display>(
        error: serde_path_to_error::Error<E>,
        line: Option<usize>,
    ) -> Self {
        let path = error.path().to_string();
        let message = format!("{path}: {}", error.inner());
        FieldError {
            path: Some(path),
            line,
            message,
        }
    }
}

pub(super) struct YamlSource<'de>(pub(super) yaml_serde::Deserializer<'de>);

impl DocumentSource for YamlSource<'_> {
    type Error = FieldError;

    fn decode<T: DeserializeOwned>(self) -> Result<T, FieldError> {
        T::deserialize(self.0).map_err(|e| FieldError {
            path: None,
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })
    }
}

pub(super) struct JsonSource<'a>(pub(super) &'a [u8]);

impl DocumentSource for JsonSource<'_> {
    type Error = FieldError;

    fn decode<T: DeserializeOwned>(self) -> Result<T, FieldError> {
        let mut deserializer = serde_json::Deserializer::from_slice(self.0);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let line = e.inner().line();
            FieldError::from_path(e, Some(line))
        })
    }
}

pub(super) struct ValueSource(pub(super) serde_json::Value);

impl DocumentSource for ValueSource {
    type Error = FieldError;

    fn decode<T: DeserializeOwned>(self) -> Result<T, FieldError> {
        serde_path_to_error::deserialize(self.0).map_err(|e| FieldError::from_path(e, None))
    }
}
