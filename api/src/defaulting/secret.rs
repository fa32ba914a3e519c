//! Secrets: `stringData` is folded into `data` before validation and never stored, as
//! Kubernetes' conversion of a v1 Secret does; a key in both takes the `stringData` value.

use k8s_openapi::ByteString;

use crate::k8s::Secret;

/// Moves `stringData` into `data` (as bytes), overriding the same keys.
pub fn fold_string_data(secret: &mut Secret) {
    let Some(strings) = secret.string_data.take() else {
        return;
    };
    if strings.is_empty() {
        return;
    }
    let data = secret.data.get_or_insert_with(Default::default);
    for (key, value) in strings {
        data.insert(key, ByteString(value.into_bytes()));
    }
}
