//! What a request asks to do, in the terms authorization speaks (Kubernetes'
//! `RequestInfo`): a verb on a resource of an API group, in a namespace, or a non-resource
//! path.

use axum::http::Method;

/// The attributes of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`;
    /// for non-resource requests the lower-cased HTTP method.
    pub verb: String,
    /// `None` for a non-resource path (`/version`, `/api`, `/openapi/v3`).
    pub resource: Option<ResourceAttributes>,
    /// The request path.
    pub path: String,
}

/// The resource part of a [`RequestInfo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceAttributes {
    /// The API group (`""` for core).
    pub group: String,
    /// The resource (`pods`).
    pub resource: String,
    /// The subresource (`status`, `log`), or empty.
    pub subresource: String,
    /// The namespace, or empty for cluster-scoped and all-namespaces requests.
    pub namespace: String,
    /// The object's name, or empty.
    pub name: String,
}

impl RequestInfo {
    /// Reads the attributes off a request's method, path and query.
    pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Self {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let rest = match parts.as_slice() {
            ["api", _version, rest @ ..] => Some(("", rest)),
            ["apis", group, _version, rest @ ..] => Some((*group, rest)),
            _ => None,
        };
        let resource = rest.and_then(|(group, rest)| {
            let (namespace, rest) = match rest {
                ["namespaces", ns, rest @ ..] if !rest.is_empty() => (*ns, rest),
                // `/namespaces/<name>`: the namespace object itself.
                ["namespaces", ns] => (*ns, &["namespaces", *ns][..]),
                _ => ("", rest),
            };
            let (resource, name, subresource) = match rest {
                [] => return None,
                [resource] => (*resource, "", String::new()),
                [resource, name] => (*resource, *name, String::new()),
                [resource, name, sub @ ..] => (*resource, *name, sub.join("/")),
            };
            Some(ResourceAttributes {
                group: group.to_string(),
                resource: resource.to_string(),
                subresource,
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
        });
        let watch = query.is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes())
                .any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
        });
        let verb = match (&resource, method) {
            (None, m) => m.as_str().to_ascii_lowercase(),
            (Some(_), m) if *m == Method::GET && watch => "watch".into(),
            (Some(r), m) if *m == Method::GET || *m == Method::HEAD => {
                if r.name.is_empty() { "list" } else { "get" }.into()
            }
            (Some(_), m) if *m == Method::POST => "create".into(),
            (Some(_), m) if *m == Method::PUT => "update".into(),
            (Some(_), m) if *m == Method::PATCH => "patch".into(),
            (Some(r), m) if *m == Method::DELETE => if r.name.is_empty() {
                "deletecollection"
            } else {
                "delete"
            }
            .into(),
            (Some(_), m) => m.as_str().to_ascii_lowercase(),
        };
        RequestInfo {
            verb,
            resource,
            path: path.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, path: &str, query: Option<&str>) -> RequestInfo {
        RequestInfo::parse(&method, path, query)
    }

    #[test]
    fn reads_verbs_resources_namespaces_and_subresources() {
        let r = info(Method::GET, "/api/v1/namespaces/default/pods", None);
        assert_eq!(r.verb, "list");
        let a = r.resource.unwrap();
        assert_eq!((a.group.as_str(), a.resource.as_str()), ("", "pods"));
        assert_eq!((a.namespace.as_str(), a.name.as_str()), ("default", ""));

        let r = info(
            Method::GET,
            "/api/v1/namespaces/default/pods",
            Some("watch=true&resourceVersion=5"),
        );
        assert_eq!(r.verb, "watch");

        let r = info(
            Method::PUT,
            "/apis/coxswain.dev/v1alpha1/namespaces/ml/trainingjobs/llm/status",
            None,
        );
        assert_eq!(r.verb, "update");
        let a = r.resource.unwrap();
        assert_eq!(a.group, "coxswain.dev");
        assert_eq!((a.name.as_str(), a.subresource.as_str()), ("llm", "status"));

        let r = info(Method::DELETE, "/api/v1/nodes/n1", None);
        assert_eq!(r.verb, "delete");
        assert_eq!(r.resource.unwrap().namespace, "");

        let r = info(Method::GET, "/api/v1/namespaces/ml", None);
        let a = r.resource.unwrap();
        assert_eq!((a.resource.as_str(), a.name.as_str()), ("namespaces", "ml"));
        assert_eq!(r.verb, "get");

        let r = info(Method::DELETE, "/api/v1/namespaces/ml/pods", None);
        assert_eq!(r.verb, "deletecollection");
    }

    #[test]
    fn discovery_and_other_paths_are_non_resource() {
        for path in [
            "/api",
            "/api/v1",
            "/apis/apps/v1",
            "/version",
            "/openapi/v3",
        ] {
            let r = info(Method::GET, path, None);
            assert!(r.resource.is_none(), "{path}");
            assert_eq!(r.verb, "get");
        }
    }
}
