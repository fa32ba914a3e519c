//! Server-side `Table` output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`): the
//! columns `kubectl get` prints, computed here so every client shows the same thing.

use coxswain_api::ParsedQuantity;
use coxswain_api::registry::KindInfo;
use serde_json::{Value, json};

use super::ApiState;
use super::objects::is_terminating;
use super::request::Query;
use super::status_error::ApiError;
use crate::store::ListOptions;

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// The object's metadata as a `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// The `includeObject` query parameter.
    pub fn from_query(query: &Query) -> Result<Self, ApiError> {
        match query.get("includeObject") {
            None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("None") => Ok(IncludeObject::None),
            Some("Object") => Ok(IncludeObject::Object),
            Some(other) => Err(ApiError::BadRequest(format!(
                "query parameter includeObject: unsupported value {other:?}: supported values: \
                 \"None\", \"Metadata\", \"Object\""
            ))),
        }
    }
}

fn column(name: &str, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": "string", "format": format, "description": description, "priority": 0})
}

/// Renders `objects` of `kind` as a Table at `revision`.
pub async fn render(
    state: &ApiState,
    kind: &KindInfo,
    include: IncludeObject,
    objects: &[Value],
    revision: u64,
    continue_token: Option<&str>,
) -> Result<Value, ApiError> {
    let mut columns = vec![column("Name", "Name of the object")];
    let extra: &[(&str, &str)] = match kind.kind {
        "Pod" => &[
            ("Ready", "Ready containers / all containers"),
            ("Status", "The pod's phase, or why it is not running"),
            ("Restarts", "Container restarts"),
            ("Age", "Time since creation"),
            ("Node", "The node the pod is bound to"),
            ("GPUs", "GPUs the pod's containers are limited to"),
        ],
        "Node" => &[
            ("Status", "Ready or NotReady, and SchedulingDisabled"),
            ("GPUs", "GPUs allocated to pods / allocatable GPUs"),
            ("Age", "Time since creation"),
        ],
        "TrainingJob" => &[
            ("State", "The latest true condition"),
            ("Workers", "Active pods / requested pods"),
            ("GPUs", "GPUs the whole job asks for"),
            ("Age", "Time since creation"),
        ],
        _ => &[("Age", "Time since creation")],
    };
    columns.extend(extra.iter().map(|(n, d)| column(n, d)));
    let allocated = if kind.kind == "Node" {
        gpus_by_node(state).await?
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = json!({"cells": cells(kind.kind, object, &allocated)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    });
                }
                IncludeObject::Object => row["object"] = object.clone(),
            }
            row
        })
        .collect();
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    Ok(json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    }))
}

fn cells(kind: &str, object: &Value, allocated: &[(String, i128)]) -> Vec<Value> {
    let name = object
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(json!(""));
    let age = json!(age(object));
    let text = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match kind {
        "Pod" => {
            let containers = object.pointer("/spec/containers").and_then(Value::as_array);
            let statuses = object
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let ready = statuses.map_or(0, |s| {
                s.iter().filter(|c| c["ready"] == json!(true)).count()
            });
            let restarts: i64 = statuses.map_or(0, |s| {
                s.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
            });
            let node = text("/spec/nodeName");
            vec![
                name,
                json!(format!("{ready}/{}", containers.map_or(0, Vec::len))),
                json!(pod_status(object)),
                json!(restarts.to_string()),
                age,
                json!(if node.is_empty() {
                    "<none>".to_string()
                } else {
                    node
                }),
                json!(format_gpus(pod_gpu_millis(object))),
            ]
        }
        "Node" => {
            let conditions = object
                .pointer("/status/conditions")
                .and_then(Value::as_array);
            let ready = conditions.is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == json!("Ready") && c["status"] == json!("True"))
            });
            let mut status = if ready { "Ready" } else { "NotReady" }.to_string();
            if object.pointer("/spec/unschedulable") == Some(&json!(true)) {
                status.push_str(",SchedulingDisabled");
            }
            let allocatable =
                quantity_millis(object.pointer("/status/allocatable/nvidia.com~1gpu"));
            let used = allocated
                .iter()
                .find(|(n, _)| {
                    Some(n.as_str()) == object.pointer("/metadata/name").and_then(Value::as_str)
                })
                .map_or(0, |(_, m)| *m);
            vec![
                name,
                json!(status),
                json!(format!(
                    "{}/{}",
                    format_gpus(used),
                    format_gpus(allocatable)
                )),
                age,
            ]
        }
        "TrainingJob" => {
            let groups = object
                .pointer("/spec/replicaGroups")
                .and_then(Value::as_array);
            let (mut total, mut gpus) = (0i64, 0i128);
            for group in groups.into_iter().flatten() {
                let replicas = group["replicas"].as_i64().unwrap_or(0);
                total += replicas;
                let per = match group["gpusPerReplica"].as_i64() {
                    Some(g) => i128::from(g) * 1000,
                    None => pod_gpu_millis(&json!({"spec": group.pointer("/template/spec")})),
                };
                gpus += per * i128::from(replicas);
            }
            let active: i64 = object
                .pointer("/status/replicaGroups")
                .and_then(Value::as_array)
                .map_or(0, |g| g.iter().filter_map(|g| g["active"].as_i64()).sum());
            let state = object
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().rev().find(|c| c["status"] == json!("True")))
                .and_then(|c| c["type"].as_str())
                .unwrap_or("Pending")
                .to_string();
            vec![
                name,
                json!(state),
                json!(format!("{active}/{total}")),
                json!(format_gpus(gpus)),
                age,
            ]
        }
        _ => vec![name, age],
    }
}

/// The STATUS column of `kubectl get pods`, simplified from Kubernetes' printer.
fn pod_status(pod: &Value) -> String {
    let mut reason = pod
        .pointer("/status/reason")
        .or_else(|| pod.pointer("/status/phase"))
        .and_then(Value::as_str)
        .unwrap_or("Pending")
        .to_string();
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    for status in statuses.into_iter().flatten() {
        if let Some(r) = status
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
        {
            reason = r.to_string();
        } else if let Some(r) = status
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            reason = r.to_string();
        }
    }
    if is_terminating(pod) {
        reason = "Terminating".to_string();
    }
    reason
}

fn quantity_millis(value: Option<&Value>) -> i128 {
    value
        .and_then(Value::as_str)
        .and_then(|q| ParsedQuantity::parse(q).ok())
        .map_or(0, |q| q.millis())
}

/// GPUs a pod's containers are limited to, in thousandths (whole GPUs and `gpu-milli`).
fn pod_gpu_millis(pod: &Value) -> i128 {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array);
    containers
        .into_iter()
        .flatten()
        .map(|c| {
            quantity_millis(c.pointer("/resources/limits/nvidia.com~1gpu"))
                + quantity_millis(c.pointer("/resources/limits/coxswain.dev~1gpu-milli")) / 1000
        })
        .sum()
}

fn format_gpus(millis: i128) -> String {
    if millis % 1000 == 0 {
        (millis / 1000).to_string()
    } else {
        format!("{:.3}", millis as f64 / 1000.0)
            .trim_end_matches('0')
            .to_string()
    }
}

/// GPUs allocated to running or pending pods, per node.
async fn gpus_by_node(state: &ApiState) -> Result<Vec<(String, i128)>, ApiError> {
    let mut by_node: Vec<(String, i128)> = Vec::new();
    let mut options = ListOptions::default();
    loop {
        let page = state
            .store
            .list("/registry/core/pods/", options.clone())
            .await?;
        for kv in &page.items {
            let Ok(pod) = serde_json::from_slice::<Value>(&kv.value) else {
                continue;
            };
            let phase = pod.pointer("/status/phase").and_then(Value::as_str);
            let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str) else {
                continue;
            };
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            let millis = pod_gpu_millis(&pod);
            match by_node.iter_mut().find(|(n, _)| n == node) {
                Some((_, total)) => *total += millis,
                None => by_node.push((node.to_string(), millis)),
            }
        }
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => return Ok(by_node),
        }
    }
}

/// `kubectl`'s AGE: `42s`, `5m3s`, `3h`, `2d4h`, `400d`.
fn age(object: &Value) -> String {
    let Some(created) = object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return "<unknown>".to_string();
    };
    human_duration(jiff::Timestamp::now().as_second() - created.as_second())
}

fn human_duration(seconds: i64) -> String {
    let (m, h, d) = (seconds / 60, seconds / 3600, seconds / 86400);
    match seconds {
        s if s < 0 => "0s".to_string(),
        s if s < 120 => format!("{s}s"),
        _ if m < 10 && seconds % 60 != 0 => format!("{m}m{}s", seconds % 60),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 && m % 60 != 0 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if h < 192 && h % 24 != 0 => format!("{d}d{}h", h % 24),
        _ if d < 730 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(303), "5m3s");
        assert_eq!(human_duration(3 * 3600), "3h");
        assert_eq!(human_duration(52 * 3600), "2d4h");
        assert_eq!(format_gpus(500), "0.5");
        assert_eq!(format_gpus(8000), "8");
    }
}
