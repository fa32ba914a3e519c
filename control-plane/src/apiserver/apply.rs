//! Server-side apply (`PATCH` with `application/apply-patch+yaml`), simplified.
//!
//! What it does: creates the object when it is missing; otherwise merges the applied
//! configuration into the live object like a strategic merge patch, removes the fields this
//! field manager applied last time but no longer applies, and records the fields each manager
//! applied in `metadata.managedFields` (`FieldsV1`, operation `Apply`). Two appliers that set
//! the same field to different values conflict (409) unless `force=true`, which moves the
//! field to the forcing manager.
//!
//! Simplifications: only `Apply` operations are tracked (a `PUT` or a non-apply `PATCH` does not
//! record an `Update` manager, so it never conflicts with an applier); `metadata` fields other
//! than labels and annotations are not owned.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::admission::FieldValidation;
use super::handlers::Ctx;
use super::handlers::create::create_value;
use super::handlers::update::write_update;
use super::negotiate::{parse_body, respond};
use super::objects::{from_store, now};
use super::status_error::ApiError;
use super::strategic_merge;

/// One owned field: `["f:spec", "f:containers", "k:{\"name\":\"a\"}", "f:image"]`.
type FieldPath = Vec<String>;

/// Serves an apply patch.
pub async fn apply(
    ctx: &Ctx<'_>,
    body: &[u8],
    field_validation: FieldValidation,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let manager = match ctx.query.get("fieldManager") {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => {
            return Err(ApiError::BadRequest(
                "fieldManager: Required value: is required for apply patch".to_string(),
            ));
        }
    };
    let force = ctx.query.flag("force")?;
    let mut applied = parse_body(body, true)?;
    if !applied.is_object() {
        return Err(ApiError::BadRequest(
            "apply patch: the body must be an object".to_string(),
        ));
    }
    let name = ctx.name()?.to_string();
    if let Some(meta) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
        meta.entry("name").or_insert_with(|| json!(name));
    } else {
        applied["metadata"] = json!({"name": name});
    }
    let fields = owned_fields(&applied);
    let entry = |fields: &BTreeSet<FieldPath>| {
        json!({
            "manager": manager,
            "operation": "Apply",
            "apiVersion": ctx.path.kind.api_version,
            "time": now(),
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(fields),
        })
    };
    let key = ctx.key()?;
    let Some(old) = ctx.state.store.get(&key).await? else {
        let mut object = applied.clone();
        object["metadata"]["managedFields"] = json!([entry(&fields)]);
        let (value, warnings) = create_value(ctx, object, field_validation, dry_run).await?;
        return Ok(respond(
            StatusCode::CREATED,
            ctx.format_for_write(),
            &value,
            &warnings,
        ));
    };
    let mut live = from_store(&old)?;
    let mut managers: Vec<Value> = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut conflicts = Vec::new();
    for other in managers
        .iter_mut()
        .filter(|m| m["manager"] != json!(manager))
    {
        let mut theirs = from_fields_v1(&other["fieldsV1"]);
        let contested: Vec<FieldPath> = theirs
            .iter()
            .filter(|f| fields.contains(*f) && lookup(&live, f) != lookup(&applied, f))
            .cloned()
            .collect();
        if contested.is_empty() {
            continue;
        }
        if force {
            for field in &contested {
                theirs.remove(field);
            }
            other["fieldsV1"] = to_fields_v1(&theirs);
        } else {
            let who = other["manager"].as_str().unwrap_or_default().to_string();
            conflicts.extend(
                contested
                    .iter()
                    .map(|f| format!("conflict with {who:?}: {}", display(f))),
            );
        }
    }
    if !conflicts.is_empty() {
        return Err(ApiError::Conflict {
            resource: ctx.resource(),
            name,
            reason: format!(
                "Apply failed with {} conflicts: {} (apply again with force=true to take them over)",
                conflicts.len(),
                conflicts.join(", ")
            ),
        });
    }
    let previous = managers
        .iter()
        .find(|m| m["manager"] == json!(manager))
        .map(|m| from_fields_v1(&m["fieldsV1"]))
        .unwrap_or_default();
    let others: BTreeSet<FieldPath> = managers
        .iter()
        .filter(|m| m["manager"] != json!(manager))
        .flat_map(|m| from_fields_v1(&m["fieldsV1"]))
        .collect();
    for dropped in previous
        .difference(&fields)
        .filter(|f| !others.contains(*f))
    {
        // A list element none of whose fields is applied any more goes as a whole.
        let target = (0..dropped.len())
            .filter(|&i| dropped[i].starts_with("k:"))
            .find(|&i| !fields.iter().any(|f| f.starts_with(&dropped[..=i])))
            .map_or_else(|| dropped.clone(), |i| dropped[..=i].to_vec());
        remove(&mut live, &target);
    }
    strategic_merge::apply(&mut live, &applied)?;
    managers
        .retain(|m| m["manager"] != json!(manager) && !from_fields_v1(&m["fieldsV1"]).is_empty());
    managers.push(entry(&fields));
    live["metadata"]["managedFields"] = Value::Array(managers);
    let (value, warnings) = write_update(
        ctx,
        &old,
        live,
        Some(old.mod_revision),
        field_validation,
        dry_run,
    )
    .await?;
    Ok(respond(
        StatusCode::OK,
        ctx.format_for_write(),
        &value,
        &warnings,
    ))
}

/// The leaf fields an applied configuration sets.
fn owned_fields(applied: &Value) -> BTreeSet<FieldPath> {
    let mut fields = BTreeSet::new();
    if let Value::Object(map) = applied {
        for (key, value) in map {
            match key.as_str() {
                "apiVersion" | "kind" | "status" => {}
                "metadata" => {
                    for owned in ["labels", "annotations"] {
                        if let Some(v) = value.get(owned) {
                            walk(
                                v,
                                vec!["f:metadata".into(), format!("f:{owned}")],
                                &mut fields,
                            );
                        }
                    }
                }
                _ => walk(value, vec![format!("f:{key}")], &mut fields),
            }
        }
    }
    fields
}

fn walk(value: &Value, path: FieldPath, fields: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let mut p = path.clone();
                p.push(format!("f:{key}"));
                walk(child, p, fields);
            }
        }
        Value::Array(items) if keyed(&path, items).is_some() => {
            let key = keyed(&path, items).unwrap_or_default();
            for item in items {
                let id = json!({key: item.get(key).cloned().unwrap_or(Value::Null)});
                let mut p = path.clone();
                p.push(format!("k:{id}"));
                walk(item, p, fields);
            }
        }
        _ => {
            fields.insert(path);
        }
    }
}

fn keyed(path: &FieldPath, items: &[Value]) -> Option<&'static str> {
    let field = path.last()?.strip_prefix("f:")?;
    let key = strategic_merge::list_merge_key(field, items.first())?;
    items.iter().all(|i| i.get(key).is_some()).then_some(key)
}

fn to_fields_v1(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for segment in path {
            node = node
                .entry(segment.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

fn from_fields_v1(value: &Value) -> BTreeSet<FieldPath> {
    fn go(node: &Map<String, Value>, path: FieldPath, out: &mut BTreeSet<FieldPath>) {
        let children: Vec<_> = node.iter().filter(|(k, _)| k.as_str() != ".").collect();
        if children.is_empty() && !path.is_empty() {
            out.insert(path);
            return;
        }
        for (key, child) in children {
            let mut p = path.clone();
            p.push(key.clone());
            go(child.as_object().unwrap_or(&Map::new()), p, out);
        }
    }
    let mut out = BTreeSet::new();
    if let Value::Object(map) = value {
        go(map, Vec::new(), &mut out);
    }
    out
}

/// The value at `path` in `object`, if present.
fn lookup<'a>(object: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    let mut node = object;
    for segment in path {
        node = step(node, segment)?;
    }
    Some(node)
}

fn step<'a>(node: &'a Value, segment: &str) -> Option<&'a Value> {
    if let Some(field) = segment.strip_prefix("f:") {
        return node.get(field);
    }
    let id: Map<String, Value> = serde_json::from_str(segment.strip_prefix("k:")?).ok()?;
    node.as_array()?
        .iter()
        .find(|item| id.iter().all(|(k, v)| item.get(k) == Some(v)))
}

/// Removes the field at `path` from `object`.
fn remove(object: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = object;
    for segment in parents {
        let next = if let Some(field) = segment.strip_prefix("f:") {
            node.get_mut(field)
        } else {
            let id: Option<Map<String, Value>> = segment
                .strip_prefix("k:")
                .and_then(|s| serde_json::from_str(s).ok());
            match (id, node.as_array_mut()) {
                (Some(id), Some(items)) => items
                    .iter_mut()
                    .find(|item| id.iter().all(|(k, v)| item.get(k) == Some(v))),
                _ => None,
            }
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        node.as_object_mut().map(|m| m.remove(field));
    } else if let (Some(id), Some(items)) = (
        last.strip_prefix("k:")
            .and_then(|s| serde_json::from_str::<Map<String, Value>>(s).ok()),
        node.as_array_mut(),
    ) {
        items.retain(|item| !id.iter().all(|(k, v)| item.get(k) == Some(v)));
    }
}

fn display(path: &FieldPath) -> String {
    path.iter()
        .map(|s| s.strip_prefix("f:").unwrap_or(s))
        .collect::<Vec<_>>()
        .join(".")
}
