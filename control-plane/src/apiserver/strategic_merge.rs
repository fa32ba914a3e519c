//! Strategic merge patch: a JSON merge patch in which lists of objects are merged by a key
//! (`containers` by `name`, `conditions` by `type`, ...) instead of replaced.
//!
//! The merge keys are Kubernetes' `patchMergeKey`s, chosen by field name (the field names are
//! unambiguous across the kinds served). The directives kubectl sends are honoured:
//! `$patch: delete|replace|merge`, `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`
//! and `$retainKeys`. Lists without a merge key are replaced, as in Kubernetes; `finalizers` is
//! merged as a set.

use serde_json::{Map, Value};

use super::status_error::ApiError;

/// The merge key of list field `field`, whose elements look like `sample`.
fn merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "replicaGroups"
        | "containerStatuses"
        | "initContainerStatuses" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" | "addresses" => "type",
        "hostAliases" => "ip",
        "ownerReferences" => "uid",
        "taints" => "key",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// The merge key of list field `field` (public for server-side apply's field sets).
pub fn list_merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    merge_key(field, sample)
}

/// Lists of strings merged as sets rather than replaced.
fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

/// Applies strategic merge patch `patch` to `target`.
pub fn apply(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::BadRequest(
            "strategic merge patch: the patch must be a JSON object".to_string(),
        ));
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        unreachable!("made an object above")
    };
    merge_map(map, patch)
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> Result<(), ApiError> {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        target.clear();
    }
    let mut orders = Vec::new();
    for (key, value) in patch {
        if let Some(list) = key.strip_prefix("$setElementOrder/") {
            orders.push((list.to_string(), value.clone()));
        } else if let Some(list) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(remove)) = (target.get_mut(list), value)
            {
                items.retain(|i| !remove.contains(i));
            }
        } else if key == "$retainKeys" {
            if let Value::Array(keep) = value {
                let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
                target.retain(|k, _| keep.contains(&k.as_str()) || patch.contains_key(k));
            }
        } else if key.starts_with('$') {
            continue;
        } else {
            merge_field(target, key, value)?;
        }
    }
    for (list, order) in orders {
        if let (Some(Value::Array(items)), Value::Array(order)) = (target.get_mut(&list), order) {
            reorder(&list, items, &order);
        }
    }
    Ok(())
}

fn merge_field(target: &mut Map<String, Value>, key: &str, value: &Value) -> Result<(), ApiError> {
    match value {
        Value::Null => {
            target.remove(key);
        }
        Value::Object(patch) => {
            if patch.get("$patch").and_then(Value::as_str) == Some("delete") {
                target.remove(key);
                return Ok(());
            }
            let slot = target
                .entry(key.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(map) = slot {
                merge_map(map, patch)?;
            }
        }
        Value::Array(items) => {
            let existing = match target.remove(key) {
                Some(Value::Array(existing)) => existing,
                _ => Vec::new(),
            };
            let merged = merge_list(key, existing, items)?;
            target.insert(key.to_string(), Value::Array(merged));
        }
        scalar => {
            target.insert(key.to_string(), scalar.clone());
        }
    }
    Ok(())
}

fn merge_list(
    field: &str,
    mut existing: Vec<Value>,
    patch: &[Value],
) -> Result<Vec<Value>, ApiError> {
    if is_set_list(field) {
        for item in patch {
            if !existing.contains(item) {
                existing.push(item.clone());
            }
        }
        return Ok(existing);
    }
    let sample = patch.iter().chain(existing.iter()).find(|v| v.is_object());
    let Some(key) = merge_key(field, sample) else {
        // Atomic list: replaced, with directives stripped from its elements.
        return patch.iter().map(clean).collect();
    };
    if patch
        .iter()
        .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return patch
            .iter()
            .filter(|p| p.get("$patch").is_none())
            .map(clean)
            .collect();
    }
    for item in patch {
        let Some(id) = item.get(key) else {
            return Err(ApiError::BadRequest(format!(
                "strategic merge patch: {field}: every element needs its merge key {key:?}"
            )));
        };
        let position = existing.iter().position(|e| e.get(key) == Some(id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                if let (Value::Object(target), Value::Object(patch)) = (&mut existing[i], item) {
                    merge_map(target, patch)?;
                }
            }
            (None, false) => existing.push(clean(item)?),
        }
    }
    Ok(existing)
}

/// A copy of `value` with every `$` directive applied against nothing.
fn clean(value: &Value) -> Result<Value, ApiError> {
    match value {
        Value::Object(patch) => {
            let mut map = Map::new();
            merge_map(&mut map, patch)?;
            Ok(Value::Object(map))
        }
        other => Ok(other.clone()),
    }
}

/// Orders `items` as `order` lists them (by merge key); the others keep their place at the end.
fn reorder(field: &str, items: &mut Vec<Value>, order: &[Value]) {
    let key = merge_key(field, items.first());
    let key_of = |v: &Value| match key {
        Some(key) => v.get(key).cloned(),
        None => Some(v.clone()),
    };
    let mut sorted = Vec::with_capacity(items.len());
    for wanted in order {
        let wanted = if wanted.is_object() {
            key_of(wanted)
        } else {
            Some(wanted.clone())
        };
        if let Some(i) = items.iter().position(|item| key_of(item) == wanted) {
            sorted.push(items.remove(i));
        }
    }
    sorted.append(items);
    *items = sorted;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merges_containers_by_name_and_env_by_name() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}});
        let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
        "containers": [
            {"name": "a", "env": [{"name": "Y", "value": "2"}]},
            {"name": "b", "$patch": "delete"},
            {"name": "c", "image": "c:1"}
        ]}});
        apply(&mut pod, &patch).unwrap();
        assert_eq!(
            pod,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "c", "image": "c:1"}
            ]}})
        );
    }

    #[test]
    fn null_removes_and_atomic_lists_replace() {
        let mut obj = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
                             "spec": {"args": ["1", "2"]}});
        let patch = json!({"metadata": {"labels": {"a": null}, "finalizers": ["y"]},
                           "spec": {"args": ["3"]}});
        apply(&mut obj, &patch).unwrap();
        assert_eq!(
            obj,
            json!({"metadata": {"labels": {"b": "2"}, "finalizers": ["x", "y"]},
                               "spec": {"args": ["3"]}})
        );
    }
}
