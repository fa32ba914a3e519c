//! Objects as JSON values: reading them from the store, writing them back, and their metadata.
//!
//! The store holds each object's JSON without `metadata.resourceVersion`; the resource version
//! is the key's mod revision and is filled in on every read.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::status_error::ApiError;
use crate::store::KeyValue;

/// Decodes a stored object and sets its `resourceVersion` from the key's revision.
pub fn from_store(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut value: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::Internal(format!("stored object {} is not valid JSON: {e}", kv.key))
    })?;
    set_meta(
        &mut value,
        "resourceVersion",
        json!(kv.mod_revision.to_string()),
    );
    Ok(value)
}

/// The bytes to store for `value` (without its `resourceVersion`).
pub fn to_store(value: &Value) -> Bytes {
    let mut value = value.clone();
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
}

/// `metadata.<field>` as a string, if set.
pub fn meta_str<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get("metadata")?.get(field)?.as_str()
}

/// `metadata`, created if missing or not an object.
pub fn meta_mut(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = json!({});
    }
    let object = value.as_object_mut().expect("made an object above");
    let meta = object.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("made an object above")
}

/// Sets `metadata.<field>`.
pub fn set_meta(value: &mut Value, field: &str, to: Value) {
    meta_mut(value).insert(field.to_string(), to);
}

/// The object's finalizers.
pub fn finalizers(value: &Value) -> Vec<String> {
    value
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the object is being deleted (has a `deletionTimestamp`).
pub fn is_terminating(value: &Value) -> bool {
    value
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// The current time as Kubernetes writes it (`2026-01-02T03:04:05Z`).
pub fn now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// The current time plus `seconds`, as [`now`] writes it.
pub fn now_plus(seconds: i64) -> String {
    let now = jiff::Timestamp::now().as_second().saturating_add(seconds);
    jiff::Timestamp::from_second(now)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| self::now())
}

/// A name from `generateName`: the prefix and five random characters, as Kubernetes.
pub fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// A new object uid.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether a kind has a `status` subresource (and its main resource ignores status writes).
pub fn has_status(kind: &str) -> bool {
    !matches!(
        kind,
        "ConfigMap"
            | "Secret"
            | "Event"
            | "Lease"
            | "PriorityClass"
            | "StorageClass"
            | "ResourceSlice"
    )
}
