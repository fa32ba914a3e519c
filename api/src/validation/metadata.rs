//! Validation of `metadata`: name, namespace, labels and annotations, for every kind.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::field::{FieldError, FieldErrorType, FieldPath, push_invalid};
use crate::names::{self, NameRule};
use crate::registry::KindInfo;

/// Largest total size of an object's annotations, as in Kubernetes.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Every problem with an object's metadata, for an object of kind `kind`.
///
/// A missing namespace is not an error here: the API server fills it from the URL
/// (or `default`) before validating.
pub fn validate_object_meta(meta: &ObjectMeta, kind: &KindInfo) -> Vec<FieldError> {
    let path = FieldPath::new("metadata");
    let mut errors = Vec::new();
    match (meta.name.as_deref(), meta.generate_name.as_deref()) {
        (Some(name), _) if !name.is_empty() => {
            push_invalid(
                &mut errors,
                &path.child("name"),
                name,
                kind.name_rule.check(name),
            );
        }
        (_, Some(prefix)) if !prefix.is_empty() => {
            // The generated suffix is five characters; the prefix must leave room for it.
            let stem = prefix.trim_end_matches('-');
            let probe = format!("{stem}x");
            let mut messages = kind.name_rule.check(&probe);
            if prefix.len() + 5 > max_name_length(kind.name_rule) {
                messages.push(format!(
                    "must be no more than {} characters",
                    max_name_length(kind.name_rule) - 5
                ));
            }
            push_invalid(&mut errors, &path.child("generateName"), prefix, messages);
        }
        _ => errors.push(FieldError::required(
            &path.child("name"),
            "name or generateName is required",
        )),
    }
    match meta.namespace.as_deref() {
        Some(ns) if !kind.namespaced && !ns.is_empty() => errors.push(FieldError::forbidden(
            &path.child("namespace"),
            format!("not allowed on this type: {} is cluster-scoped", kind.kind),
        )),
        Some(ns) if kind.namespaced => {
            push_invalid(
                &mut errors,
                &path.child("namespace"),
                ns,
                names::dns1123_label(ns),
            );
        }
        _ => {}
    }
    errors.extend(validate_labels(meta, &path));
    if let Some(annotations) = &meta.annotations {
        let annotations_path = path.child("annotations");
        let mut total = 0;
        for (key, value) in annotations {
            push_invalid(
                &mut errors,
                &annotations_path,
                key,
                names::qualified_name(key),
            );
            total += key.len() + value.len();
        }
        if total > MAX_ANNOTATIONS_BYTES {
            errors.push(FieldError::new(
                FieldErrorType::TooLong,
                &annotations_path,
                format!("may not be more than {MAX_ANNOTATIONS_BYTES} bytes"),
            ));
        }
    }
    errors
}

fn max_name_length(rule: NameRule) -> usize {
    match rule {
        NameRule::Dns1123Subdomain | NameRule::PathSegment => names::DNS1123_SUBDOMAIN_MAX_LENGTH,
        NameRule::Dns1123Label | NameRule::Dns1035Label => names::DNS1123_LABEL_MAX_LENGTH,
    }
}

/// Every problem with labels on a pod template or similar nested metadata.
pub(crate) fn validate_labels(meta: &ObjectMeta, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(labels) = &meta.labels {
        let labels_path = path.child("labels");
        for (key, value) in labels {
            push_invalid(&mut errors, &labels_path, key, names::qualified_name(key));
            push_invalid(
                &mut errors,
                &labels_path.key(key),
                value,
                names::label_value(value),
            );
        }
    }
    errors
}
