//! Validation of Secrets and ConfigMaps, after Kubernetes' `ValidateSecret` and
//! `ValidateConfigMap`: every key a valid config key, at most 1 MiB of values, and the keys
//! each built-in Secret type requires. A Secret's `stringData` has been folded into `data`
//! by then, so its bad keys are reported under `data`, as Kubernetes reports them.

use super::field::{FieldError, FieldErrorType, FieldPath};
use crate::k8s::{ConfigMap, Secret};

/// The most bytes of values a Secret or ConfigMap may hold.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// Every problem with a Secret's data and type (metadata is checked by [`super::validate`]).
pub fn validate_secret(secret: &Secret) -> Vec<FieldError> {
    let path = FieldPath::new("data");
    let data = secret.data.clone().unwrap_or_default();
    let mut errors = Vec::new();
    let mut total = 0;
    for (key, value) in &data {
        errors.extend(config_key_errors(&path, key));
        total += value.0.len();
    }
    if total > MAX_SECRET_BYTES {
        errors.push(too_long(&path));
    }
    let has = |key: &str| data.contains_key(key);
    let required = |key: &str| FieldError::required(&path.key(key), "");
    match secret.type_.as_deref().unwrap_or_default() {
        "kubernetes.io/service-account-token" => {
            let name = "kubernetes.io/service-account.name";
            let annotated = secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(name))
                .is_some_and(|v| !v.is_empty());
            if !annotated {
                let annotations = FieldPath::new("metadata").child("annotations");
                errors.push(FieldError::required(&annotations.key(name), ""));
            }
        }
        "kubernetes.io/dockercfg" => errors.extend(docker_config(&path, &data, ".dockercfg")),
        "kubernetes.io/dockerconfigjson" => {
            errors.extend(docker_config(&path, &data, ".dockerconfigjson"));
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errors.push(required("username"));
            errors.push(required("password"));
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(|v| v.0.is_empty()) => {
            errors.push(required("ssh-privatekey"));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errors.push(required(key));
                }
            }
        }
        _ => {}
    }
    errors
}

/// Every problem with a ConfigMap's `data` and `binaryData`.
pub fn validate_config_map(config_map: &ConfigMap) -> Vec<FieldError> {
    let data = config_map.data.clone().unwrap_or_default();
    let binary = config_map.binary_data.clone().unwrap_or_default();
    let mut errors = Vec::new();
    let mut total = 0;
    let data_path = FieldPath::new("data");
    for (key, value) in &data {
        errors.extend(config_key_errors(&data_path, key));
        if binary.contains_key(key) {
            let message = format!("{key:?}: duplicate of key present in binaryData");
            errors.push(FieldError::invalid(&data_path.key(key), message));
        }
        total += value.len();
    }
    let binary_path = FieldPath::new("binaryData");
    for (key, value) in &binary {
        errors.extend(config_key_errors(&binary_path, key));
        if data.contains_key(key) {
            let message = format!("{key:?}: duplicate of key present in data");
            errors.push(FieldError::invalid(&binary_path.key(key), message));
        }
        total += value.0.len();
    }
    if total > MAX_SECRET_BYTES {
        errors.push(too_long(&FieldPath::new("")));
    }
    errors
}

/// Kubernetes' `IsConfigMapKey`, each problem an `Invalid` error at `path[key]`.
fn config_key_errors(path: &FieldPath, key: &str) -> Vec<FieldError> {
    let mut messages = Vec::new();
    if key.len() > 253 {
        messages.push("must be no more than 253 characters".to_string());
    }
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        messages.push(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. \
             'key.name', or 'KEY_NAME', or 'key-name', regex used for validation is \
             '[-._a-zA-Z0-9]+')"
                .to_string(),
        );
    }
    match key {
        "." => messages.push("must not be '.'".into()),
        ".." => messages.push("must not be '..'".into()),
        k if k.starts_with("..") => messages.push("must not start with '..'".into()),
        _ => {}
    }
    messages
        .into_iter()
        .map(|m| FieldError::invalid(&path.key(key), format!("{key:?}: {m}")))
        .collect()
}

fn docker_config(
    path: &FieldPath,
    data: &std::collections::BTreeMap<String, k8s_openapi::ByteString>,
    key: &str,
) -> Option<FieldError> {
    let Some(value) = data.get(key) else {
        return Some(FieldError::required(&path.key(key), ""));
    };
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&value.0)
        .err()
        .map(|e| FieldError::invalid(&path.key(key), format!("<secret contents redacted>: {e}")))
}

fn too_long(path: &FieldPath) -> FieldError {
    FieldError::new(
        FieldErrorType::TooLong,
        path,
        format!("must have at most {MAX_SECRET_BYTES} bytes"),
    )
}
