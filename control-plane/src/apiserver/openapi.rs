//! OpenAPI v3 (`/openapi/v3` and one document per group version), enough for kubectl.
//!
//! kubectl uses it twice: `kubectl apply` checks that each kind's PATCH operation takes the
//! `fieldValidation` parameter and then leaves validation to the server (`fieldValidation=Strict`)
//! instead of validating client-side, and `kubectl explain` walks the schemas. coxswain's own
//! kinds have described schemas ([`super::openapi_schemas`]); Kubernetes kinds have open `spec`
//! and `status` objects (their full schemas are not served yet). No strategic-merge media type
//! is advertised, so kubectl computes strategic patches from its built-in types.

use coxswain_api::registry::{KINDS, KindInfo};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::openapi_schemas;
use super::status_error::ApiError;

/// `/openapi/v3` or `/openapi/v3/<api|apis/group>/<version>`.
pub fn serve(path: &str) -> Result<Value, ApiError> {
    let rest = path.trim_start_matches("/openapi/v3").trim_matches('/');
    if rest.is_empty() {
        let mut paths = Map::new();
        for gv in group_versions() {
            let doc = document(&gv.0, &gv.1);
            let hash = hex(&Sha256::digest(doc.to_string().as_bytes())[..8]);
            let key = gv_path(&gv.0, &gv.1);
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
            );
        }
        return Ok(json!({"paths": paths}));
    }
    let (group, version) = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["api", version] => (String::new(), (*version).to_string()),
        ["apis", group, version] => ((*group).to_string(), (*version).to_string()),
        _ => return Err(ApiError::no_route(path)),
    };
    if !group_versions().contains(&(group.clone(), version.clone())) {
        return Err(ApiError::no_route(path));
    }
    Ok(document(&group, &version))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn group_versions() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for kind in KINDS {
        let gv = (kind.group.to_string(), kind.version.to_string());
        if !out.contains(&gv) {
            out.push(gv);
        }
    }
    out
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The schema name of a kind: `io.k8s.api.core.v1.Pod`, `dev.coxswain.v1alpha1.TrainingJob`.
pub fn schema_name(kind: &KindInfo) -> String {
    let group = match kind.group {
        "" => "io.k8s.api.core".to_string(),
        "coxswain.dev" => "dev.coxswain".to_string(),
        g => format!("io.k8s.api.{}", g.split('.').next().unwrap_or(g)),
    };
    format!("{group}.{}.{}", kind.version, kind.kind)
}

fn gvk(kind: &KindInfo) -> Value {
    json!({"group": kind.group, "version": kind.version, "kind": kind.kind})
}

fn param(name: &str, location: &str) -> Value {
    json!({"name": name, "in": location, "required": location == "path", "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(kind: &KindInfo, action: &str, params: &[Value], body: Option<Value>) -> Value {
    let reference = json!({"$ref": format!("#/components/schemas/{}", schema_name(kind))});
    let mut op = json!({
        "description": format!("{action} {}", kind.kind),
        "operationId": format!("{action}{}", kind.kind),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(kind),
    });
    if let Some(content) = body {
        op["requestBody"] = json!({"content": content, "required": true});
    }
    op
}

/// The OpenAPI document of one group version.
fn document(group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".to_string(),
        openapi_schemas::object_meta(),
    );
    for kind in KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        let base = format!("/{}", gv_path(group, version));
        let collection = if kind.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", kind.plural)
        } else {
            format!("{base}/{}", kind.plural)
        };
        let mut scope = vec![param("pretty", "query")];
        if kind.namespaced {
            scope.push(param("namespace", "path"));
        }
        let write: Vec<Value> = scope
            .iter()
            .cloned()
            .chain(["dryRun", "fieldManager", "fieldValidation"].map(|p| param(p, "query")))
            .collect();
        let named: Vec<Value> = write
            .iter()
            .cloned()
            .chain([param("name", "path")])
            .collect();
        let reference =
            json!({"schema": {"$ref": format!("#/components/schemas/{}", schema_name(kind))}});
        let object_body = json!({"application/json": reference, "application/yaml": reference});
        let patch_body = json!({
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        });
        paths.insert(
            collection.clone(),
            json!({
                "get": operation(kind, "list", &scope, None),
                "post": operation(kind, "post", &write, Some(object_body.clone())),
            }),
        );
        let mut item = json!({
            "get": operation(kind, "get", &named, None),
            "put": operation(kind, "put", &named, Some(object_body)),
            "patch": operation(kind, "patch", &named, Some(patch_body)),
            "delete": operation(kind, "delete", &named, None),
        });
        item["parameters"] = json!([]);
        paths.insert(format!("{collection}/{{name}}"), item);
        schemas.insert(schema_name(kind), openapi_schemas::kind_schema(kind));
        for (name, schema) in openapi_schemas::extra_schemas(kind) {
            schemas.insert(name, schema);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "coxswain", "version": format!("v1.{}.0", super::discovery::KUBE_MINOR)},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}
