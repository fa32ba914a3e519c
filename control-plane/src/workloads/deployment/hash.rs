//! The `pod-template-hash`: FNV-1a (32 bit) of the pod template and the collision count,
//! written in Kubernetes' "safe" alphabet (no vowels, no look-alikes).

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// Label carrying the template hash on ReplicaSets, their selectors and pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The hash of `template` (without its own `pod-template-hash` label) and `collision_count`.
pub fn template_hash(template: &PodTemplateSpec, collision_count: i32) -> String {
    let template = without_hash(template);
    let mut bytes = serde_json::to_vec(&template).unwrap_or_default();
    if collision_count > 0 {
        bytes.extend_from_slice(collision_count.to_string().as_bytes());
    }
    let hash = fnv1a32(&bytes);
    hash.to_string()
        .bytes()
        .map(|d| SAFE_ALPHABET[usize::from(d) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// `template` without the `pod-template-hash` label, for comparing templates.
pub fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    template
}

/// Whether two templates are equal apart from the hash label.
pub fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let value = |t: &PodTemplateSpec| serde_json::to_value(without_hash(t)).ok();
    value(a) == value(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap()
    }

    #[test]
    fn hash_is_stable_and_ignores_its_own_label() {
        let a = template("v1");
        let mut labelled = a.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), "x".into());
        assert_eq!(template_hash(&a, 0), template_hash(&labelled, 0));
        assert!(same_template(&a, &labelled));
        assert_ne!(template_hash(&a, 0), template_hash(&template("v2"), 0));
        assert_ne!(template_hash(&a, 0), template_hash(&a, 1));
        assert!(
            template_hash(&a, 0)
                .bytes()
                .all(|b| SAFE_ALPHABET.contains(&b))
        );
    }
}
