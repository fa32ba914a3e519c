//! One handler per verb; [`Ctx`] is what they share about a request.

pub mod create;
pub mod delete;
pub mod get;
pub mod list;
pub mod log;
pub mod patch;
pub mod update;
pub mod watch;
pub mod watch_cache;

use axum::http::HeaderMap;

use super::ApiState;
use super::negotiate::Format;
use super::request::{Query, ResourcePath};
use super::status_error::ApiError;
use crate::store::KeyValue;

/// A request to a resource path, parsed.
pub struct Ctx<'a> {
    /// The server's shared state.
    pub state: &'a ApiState,
    /// Kind, namespace, name and subresource.
    pub path: ResourcePath,
    /// The query parameters.
    pub query: Query,
    /// The request headers.
    pub headers: HeaderMap,
    /// The response format the client accepts.
    pub format: Format,
}

impl Ctx<'_> {
    /// The plural resource name, for messages (`pods`, `jobs.batch`).
    pub fn resource(&self) -> String {
        resource_name(self.path.kind)
    }

    /// The object's name from the URL (400 when the URL names none).
    pub fn name(&self) -> Result<&str, ApiError> {
        self.path.name.as_deref().ok_or_else(|| {
            ApiError::MethodNotAllowed("this verb needs an object name in the URL".to_string())
        })
    }

    /// The response format of a write (a table only makes sense for reads).
    pub fn format_for_write(&self) -> Format {
        match self.format {
            Format::Table => Format::Json,
            other => other,
        }
    }

    /// The store key of the object the URL names.
    pub fn key(&self) -> Result<String, ApiError> {
        let name = self.name()?;
        self.key_of(name)
    }

    /// The store key of object `name` in the URL's namespace.
    pub fn key_of(&self, name: &str) -> Result<String, ApiError> {
        self.path
            .kind
            .store_key(self.path.namespace.as_deref(), name)
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    /// The store prefix of the collection the URL names.
    pub fn prefix(&self) -> Result<String, ApiError> {
        self.path
            .kind
            .store_prefix(self.path.namespace.as_deref())
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    /// The object the URL names, or 404.
    pub async fn load(&self) -> Result<KeyValue, ApiError> {
        let key = self.key()?;
        self.state.store.get(&key).await?.ok_or_else(|| {
            ApiError::not_found(
                &self.resource(),
                self.path.name.as_deref().unwrap_or_default(),
            )
        })
    }
}

/// `pods` for core kinds, `jobs.batch` for the others, as Kubernetes names them in messages.
pub fn resource_name(kind: &coxswain_api::registry::KindInfo) -> String {
    if kind.group.is_empty() {
        kind.plural.to_string()
    } else {
        format!("{}.{}", kind.plural, kind.group)
    }
}
