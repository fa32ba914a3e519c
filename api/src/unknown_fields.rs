//! Finding fields a client sent that the typed object does not have.
//!
//! Decoding ignores unknown fields, as Kubernetes does by default. The API server can
//! honour `fieldValidation=Strict|Warn` by comparing the JSON it received with the JSON
//! of the decoded object: every key present in the input but absent from the re-encoded
//! object is unknown. Keys whose value is `null` are not reported, since encoding drops
//! unset fields.

use serde_json::Value;

/// The paths (`spec.replicaGroups[0].replica`) of fields in `raw` that `decoded` lacks.
///
/// `decoded` is the re-encoded typed object, e.g. `Object::to_json_value`.
pub fn unknown_fields(raw: &Value, decoded: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(raw, decoded, "", &mut found);
    found
}

fn walk(raw: &Value, decoded: &Value, path: &str, found: &mut Vec<String>) {
    match (raw, decoded) {
        (Value::Object(raw), Value::Object(decoded)) => {
            for (key, value) in raw {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match decoded.get(key) {
                    Some(known) => walk(value, known, &child, found),
                    None if value.is_null() => {}
                    None => found.push(child),
                }
            }
        }
        (Value::Array(raw), Value::Array(decoded)) => {
            for (index, (value, known)) in raw.iter().zip(decoded).enumerate() {
                walk(value, known, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_value;

    #[test]
    fn reports_misspelled_fields() {
        let raw = serde_json::json!({
            "apiVersion": "coxswain.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "llm", "labelz": {"a": "b"}},
            "spec": {
                "replicaGroups": [{"name": "worker", "replica": 2, "replicas": 2,
                                   "template": {"spec": {"containers": [
                                       {"name": "c", "image": "i", "imagePullPolicy": null}]}}}],
                "queue": "research"
            }
        });
        let object = decode_value(raw.clone()).expect("decodes");
        let decoded = object.to_json_value().expect("encodes");
        assert_eq!(
            unknown_fields(&raw, &decoded),
            vec!["metadata.labelz", "spec.replicaGroups[0].replica"]
        );
    }

    #[test]
    fn pods_have_no_unknown_fields_when_clean() {
        let raw = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": "n1"}
        });
        let object = decode_value(raw.clone()).expect("decodes");
        let decoded = object.to_json_value().expect("encodes");
        assert!(unknown_fields(&raw, &decoded).is_empty());
    }
}
