//! Validation of `PersistentVolumeClaim` specs, after Kubernetes' `ValidatePersistentVolumeClaimSpec`:
//! at least one access mode, each a known one, and a storage request greater than zero.

use super::field::{FieldError, FieldPath};
use crate::k8s::PersistentVolumeClaim;
use crate::quantity::ParsedQuantity;

/// The access modes a claim may ask for.
pub const ACCESS_MODES: &[&str] = &[
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

/// The volume modes a claim may ask for.
pub const VOLUME_MODES: &[&str] = &["Filesystem", "Block"];

/// Every problem with a claim's spec (metadata is checked by [`super::validate`]).
pub fn validate_persistent_volume_claim(claim: &PersistentVolumeClaim) -> Vec<FieldError> {
    let path = FieldPath::new("spec");
    let mut errors = Vec::new();
    let Some(spec) = claim.spec.as_ref() else {
        errors.push(FieldError::required(&path, ""));
        return errors;
    };
    let modes_path = path.child("accessModes");
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    if modes.is_empty() {
        errors.push(FieldError::required(
            &modes_path,
            "at least 1 access mode is required",
        ));
    }
    for (i, mode) in modes.iter().enumerate() {
        if !ACCESS_MODES.contains(&mode.as_str()) {
            errors.push(FieldError::not_supported(
                &modes_path.index(i),
                mode,
                ACCESS_MODES,
            ));
        }
    }
    if modes.iter().any(|m| m == "ReadWriteOncePod") && modes.len() > 1 {
        errors.push(FieldError::forbidden(
            &modes_path,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    if let Some(mode) = spec.volume_mode.as_deref()
        && !VOLUME_MODES.contains(&mode)
    {
        errors.push(FieldError::not_supported(
            &path.child("volumeMode"),
            mode,
            VOLUME_MODES,
        ));
    }
    let storage_path = path.child("resources").child("requests").key("storage");
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    match storage.map(|q| ParsedQuantity::parse(&q.0)) {
        None => errors.push(FieldError::required(&storage_path, "")),
        Some(Err(error)) => errors.push(FieldError::invalid(&storage_path, error.to_string())),
        Some(Ok(quantity)) if quantity <= ParsedQuantity::ZERO => errors.push(FieldError::invalid(
            &storage_path,
            "must be greater than zero",
        )),
        Some(Ok(_)) => {}
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(spec: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "c"}, "spec": spec}))
            .unwrap()
    }

    fn messages(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_claim_with_modes_and_a_positive_request_is_valid() {
        let ok = claim(serde_json::json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        }));
        assert!(validate_persistent_volume_claim(&ok).is_empty());
    }

    #[test]
    fn a_zero_or_missing_storage_request_names_the_field() {
        for requests in [
            serde_json::json!({"storage": "0"}),
            serde_json::json!({}),
            serde_json::json!({"storage": "-1Gi"}),
        ] {
            let bad = claim(serde_json::json!({
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": requests},
            }));
            let errors = messages(validate_persistent_volume_claim(&bad));
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with("spec.resources.requests[storage]"),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn access_modes_are_required_and_known() {
        let none = claim(serde_json::json!({"resources": {"requests": {"storage": "1"}}}));
        assert!(
            messages(validate_persistent_volume_claim(&none))[0].starts_with("spec.accessModes")
        );
        let unknown = claim(serde_json::json!({
            "accessModes": ["WriteSometimes"],
            "resources": {"requests": {"storage": "1"}},
        }));
        assert!(
            messages(validate_persistent_volume_claim(&unknown))[0]
                .starts_with("spec.accessModes[0]")
        );
    }
}
