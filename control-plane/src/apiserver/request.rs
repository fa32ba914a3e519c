//! Parsing a request: which kind, namespace, name and subresource a path names, and the query.

use std::collections::HashMap;

use coxswain_api::registry::{self, KindInfo};

use super::status_error::ApiError;

/// A resource path: `/api/v1/namespaces/<ns>/pods/<name>/status` and its relatives.
#[derive(Debug, Clone)]
pub struct ResourcePath {
    /// The kind the path serves.
    pub kind: &'static KindInfo,
    /// The namespace, for namespaced paths (absent on all-namespaces lists).
    pub namespace: Option<String>,
    /// The object's name, for single-object paths.
    pub name: Option<String>,
    /// The subresource (`status`), if any.
    pub subresource: Option<String>,
}

/// What a path under `/api` or `/apis` addresses.
#[derive(Debug)]
pub enum ApiPath {
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: the API groups.
    Groups,
    /// `/apis/<group>`: one group.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`: the resources of one group version.
    Resources {
        /// The group (empty for core).
        group: String,
        /// The version.
        version: String,
    },
    /// A resource or object.
    Resource(ResourcePath),
}

/// Parses `path`; `Ok(None)` when it is not under `/api` or `/apis`.
pub fn parse_path(path: &str) -> Result<Option<ApiPath>, ApiError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api"] => return Ok(Some(ApiPath::CoreVersions)),
        ["apis"] => return Ok(Some(ApiPath::Groups)),
        ["apis", group] => return Ok(Some(ApiPath::Group((*group).to_string()))),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Ok(None),
    };
    if rest.is_empty() {
        return Ok(Some(ApiPath::Resources {
            group: group.to_string(),
            version: version.to_string(),
        }));
    }
    if rest.iter().any(|s| s.is_empty()) {
        return Err(ApiError::no_route(path));
    }
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, tail @ ..] if !is_namespace_subresource(resource) => {
            (Some((*ns).to_string()), prepend(resource, tail))
        }
        _ => (None, rest.to_vec()),
    };
    let (resource, name, subresource) = match rest.as_slice() {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return Err(ApiError::no_route(path)),
    };
    let kind = registry::by_resource(group, resource)
        .filter(|k| k.version == version)
        .ok_or_else(|| ApiError::no_route(path))?;
    if namespace.is_some() && !kind.namespaced {
        return Err(ApiError::no_route(path));
    }
    let is_pod_log = subresource == Some("log") && group.is_empty() && resource == "pods";
    let is_csr_approval = subresource == Some("approval")
        && group == "certificates.k8s.io"
        && resource == "certificatesigningrequests";
    if let Some(sub) = subresource
        && sub != "status"
        && !is_pod_log
        && !is_csr_approval
    {
        return Err(ApiError::NotFound {
            message: format!("{resource} has no subresource \"{sub}\" (only \"status\")"),
            name: None,
            kind: None,
        });
    }
    Ok(Some(ApiPath::Resource(ResourcePath {
        kind,
        namespace,
        name: name.map(percent_decode),
        subresource: subresource.map(str::to_string),
    })))
}

fn is_namespace_subresource(segment: &str) -> bool {
    matches!(segment, "status" | "finalize")
}

fn prepend<'a>(first: &'a str, tail: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![first];
    v.extend_from_slice(tail);
    v
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_string())
}

/// The query parameters of a request.
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        let map = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
        Query(map)
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter (`true`, `1`); anything else not empty is a 400.
    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "query parameter {key}: invalid boolean {other:?}"
            ))),
        }
    }

    /// A non-negative integer parameter.
    pub fn number(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                ApiError::BadRequest(format!(
                    "query parameter {key}: invalid value {text:?}: must be a non-negative integer"
                ))
            }),
        }
    }

    /// `resourceVersion` as a revision; `None` when unset or `0`.
    pub fn resource_version(&self) -> Result<Option<u64>, ApiError> {
        match self.get("resourceVersion") {
            None | Some("") | Some("0") => Ok(None),
            Some(text) => parse_resource_version(text).map(Some),
        }
    }

    /// Whether the request is a dry run (`dryRun=All`).
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "query parameter dryRun: unsupported value {other:?}: supported values: \"All\""
            ))),
        }
    }
}

/// Parses a `resourceVersion` given by a client.
pub fn parse_resource_version(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "invalid resource version {text:?}: must be a resourceVersion returned by this server"
        ))
    })
}
