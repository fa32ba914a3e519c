//! Discovery: `/version`, `/api`, `/apis`, `/apis/<group>` and the resource lists of each
//! group version, built from the kind registry.
//!
//! kubectl 1.37 first asks for aggregated discovery (`as=APIGroupDiscoveryList`) and falls back
//! to these legacy documents when the response's media type is plain `application/json`.

use coxswain_api::registry::{KINDS, KindInfo};
use serde_json::{Value, json};

use super::status_error::ApiError;

/// The Kubernetes version coxswain's API follows.
pub const KUBE_MINOR: &str = "37";

/// `GET /version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0-coxswain.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// `GET /api`: the core group's versions.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

/// The named API groups, in registry order, each with its versions.
fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for kind in KINDS.iter().filter(|k| !k.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == kind.group) {
            Some((_, versions)) if !versions.contains(&kind.version) => versions.push(kind.version),
            Some(_) => {}
            None => groups.push((kind.group, vec![kind.version])),
        }
    }
    groups
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    })
}

/// `GET /apis`.
pub fn group_list() -> Value {
    let mut groups: Vec<Value> = groups()
        .iter()
        .map(|(g, versions)| group_json(g, versions))
        .collect();
    groups.push(super::resource_metrics::group());
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`.
pub fn group(name: &str) -> Result<Value, ApiError> {
    let (group, versions) = groups()
        .into_iter()
        .find(|(g, _)| *g == name)
        .ok_or_else(|| ApiError::no_route(&format!("/apis/{name}")))?;
    let mut value = group_json(group, &versions);
    value["kind"] = json!("APIGroup");
    value["apiVersion"] = json!("v1");
    Ok(value)
}

/// The verbs every kind supports.
const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// Kinds shown by `kubectl get all`.
fn categories(kind: &KindInfo) -> &'static [&'static str] {
    match kind.kind {
        "Pod" | "Service" | "Deployment" | "ReplicaSet" | "DaemonSet" | "Job" | "CronJob"
        | "TrainingJob" => &["all"],
        _ => &[],
    }
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`: an APIResourceList.
pub fn resource_list(group: &str, version: &str) -> Result<Value, ApiError> {
    let kinds: Vec<&KindInfo> = KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .collect();
    if kinds.is_empty() {
        let path = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        return Err(ApiError::no_route(&path));
    }
    let mut resources = Vec::new();
    for kind in kinds {
        resources.push(json!({
            "name": kind.plural,
            "singularName": kind.singular,
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": VERBS,
            "shortNames": kind.short_names,
            "categories": categories(kind),
        }));
        if super::objects::has_status(kind.kind) {
            resources.push(json!({
                "name": format!("{}/status", kind.plural),
                "singularName": "",
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}
