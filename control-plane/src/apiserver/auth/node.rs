//! The node authorizer and node restriction, as Kubernetes has them: a node's credential
//! (user `system:node:<name>`, group `system:nodes`) reaches only what that node's work
//! needs.
//!
//! | resource | allowed |
//! |---|---|
//! | nodes | read any; create, update, patch its own Node (and `status`) |
//! | leases in `kube-node-lease` | everything on the Lease named after it |
//! | pods | list and watch; get, delete, and update/patch `status` of pods bound to it |
//! | secrets, configmaps, persistentvolumeclaims | get those a pod bound to it references |
//! | persistentvolumes | get those bound to such a claim |
//! | events | create, patch |
//! | certificatesigningrequests | create, get, list, watch (renewing its certificate) |
//!
//! Anything else a node asks is decided by the other authorizers (RBAC), as in Kubernetes
//! where the node authorizer has no opinion outside its graph. The graph (pods bound to each
//! node and what they reference) is read from the store per request, or, with
//! [`NodeAuthorizer::with_cache`], from a watch-fed cache of each bound pod's edges: what the
//! cache allows is allowed, what it does not is checked against the store.

use std::collections::BTreeSet;
use std::sync::Arc;

use coxswain_api::k8s::{PersistentVolumeClaim, Pod};
use coxswain_api::registry;

use super::informer::Informer;
use super::stored;
use super::{RequestInfo, ResourceAttributes, UserInfo};
use crate::nodeservice::lease::LEASE_NAMESPACE;
use crate::nodeservice::pods::{claim_references, references};
use crate::store::{Store, StoreError};

/// The group of every node credential.
pub const NODES_GROUP: &str = "system:nodes";
/// The user-name prefix of node credentials.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// What the node authorizer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Refused: a node may not do this, whatever else would allow it.
    Deny,
    /// Not a node request, or not a resource the node authorizer judges.
    NoOpinion,
}

/// The node authorizer over a store.
#[derive(Clone)]
pub struct NodeAuthorizer {
    store: Arc<dyn Store>,
    graph: Option<Arc<Informer<PodEdges>>>,
}

/// A bound pod's edges in the node graph: its node and the objects it references.
struct PodEdges {
    node: String,
    secrets: BTreeSet<String>,
    config_maps: BTreeSet<String>,
    claims: BTreeSet<String>,
}

impl PodEdges {
    /// The edges of a stored pod; `None` for a pod bound to no node.
    fn of(bytes: &[u8]) -> Option<Self> {
        let pod: Pod = serde_json::from_slice(bytes).ok()?;
        let node = pod.spec.as_ref()?.node_name.clone()?;
        let (secrets, config_maps) = references(&pod);
        Some(Self {
            node,
            secrets,
            config_maps,
            claims: claim_references(&pod),
        })
    }
}

impl std::fmt::Debug for NodeAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAuthorizer").finish_non_exhaustive()
    }
}

/// The node a credential belongs to: its name when the user is `system:node:<name>` in
/// `system:nodes`.
pub fn node_of(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    (!name.is_empty() && user.groups.iter().any(|g| g == NODES_GROUP)).then_some(name)
}

impl NodeAuthorizer {
    /// The node authorizer over `store`, reading it for every decision.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, graph: None }
    }

    /// The node authorizer over a watch-fed cache of the pods in `store` (started on the
    /// current tokio runtime), confirming against the store what the cache does not allow.
    pub fn with_cache(store: Arc<dyn Store>) -> Self {
        let prefix = registry::lookup("v1", "Pod")
            .and_then(|k| k.store_prefix(None).ok())
            .unwrap_or_default();
        let graph = Informer::start_with(store.clone(), prefix, PodEdges::of);
        Self {
            store,
            graph: Some(Arc::new(graph)),
        }
    }

    /// Judges `info` asked by `user`.
    pub async fn decide(
        &self,
        user: &UserInfo,
        info: &RequestInfo,
    ) -> Result<Decision, StoreError> {
        let (Some(node), Some(r)) = (node_of(user), &info.resource) else {
            return Ok(Decision::NoOpinion);
        };
        let verb = info.verb.as_str();
        let read = matches!(verb, "get" | "list" | "watch");
        let allow = |yes: bool| if yes { Decision::Allow } else { Decision::Deny };
        Ok(match (r.group.as_str(), r.resource.as_str()) {
            ("", "nodes") => allow(
                read || (matches!(verb, "create" | "update" | "patch")
                    && r.name == node
                    && matches!(r.subresource.as_str(), "" | "status")),
            ),
            ("coordination.k8s.io", "leases") => {
                allow(r.namespace == LEASE_NAMESPACE && r.name == node)
            }
            ("", "pods") => match verb {
                "list" | "watch" => Decision::Allow,
                "get" | "delete" => {
                    allow(r.subresource.is_empty() && self.bound_here(r, node).await?)
                }
                "update" | "patch" => {
                    allow(r.subresource == "status" && self.bound_here(r, node).await?)
                }
                _ => Decision::Deny,
            },
            ("", "secrets" | "configmaps" | "persistentvolumeclaims") => {
                allow(verb == "get" && self.referenced(r, node).await?)
            }
            ("", "persistentvolumes") => {
                allow(verb == "get" && self.volume_referenced(&r.name, node).await?)
            }
            ("" | "events.k8s.io", "events") => allow(matches!(verb, "create" | "patch")),
            // Kubernetes' node rules: a node asks for its renewed client certificate (the
            // approver checks that the subject is the node itself).
            ("certificates.k8s.io", "certificatesigningrequests") if read || verb == "create" => {
                Decision::Allow
            }
            _ => Decision::NoOpinion,
        })
    }

    /// Whether the pod `r` names is bound to `node`.
    async fn bound_here(&self, r: &ResourceAttributes, node: &str) -> Result<bool, StoreError> {
        if let Some(graph) = &self.graph
            && let Ok(key) = registry::store_key("v1", "Pod", Some(&r.namespace), &r.name)
            && graph.get(&key).is_some_and(|edges| edges.node == node)
        {
            return Ok(true);
        }
        let pod: Option<Pod> =
            stored::get(&*self.store, "v1", "Pod", Some(&r.namespace), &r.name).await?;
        Ok(pod.is_some_and(|p| bound_to(&p, node)))
    }

    /// Whether a pod bound to `node` in `r`'s namespace references the secret, configMap or
    /// claim `r` names.
    async fn referenced(&self, r: &ResourceAttributes, node: &str) -> Result<bool, StoreError> {
        if r.name.is_empty() {
            return Ok(false);
        }
        if let Some(graph) = &self.graph
            && let Some(prefix) =
                registry::lookup("v1", "Pod").and_then(|k| k.store_prefix(Some(&r.namespace)).ok())
            && graph.list(&prefix).iter().any(|edges| {
                edges.node == node
                    && match r.resource.as_str() {
                        "secrets" => edges.secrets.contains(&r.name),
                        "configmaps" => edges.config_maps.contains(&r.name),
                        _ => edges.claims.contains(&r.name),
                    }
            })
        {
            return Ok(true);
        }
        Ok(self
            .pods_on(node, Some(&r.namespace))
            .await?
            .iter()
            .any(|pod| match r.resource.as_str() {
                "secrets" => references(pod).0.contains(&r.name),
                "configmaps" => references(pod).1.contains(&r.name),
                _ => claim_references(pod).contains(&r.name),
            }))
    }

    /// Whether the volume `name` is bound to a claim a pod on `node` uses.
    async fn volume_referenced(&self, name: &str, node: &str) -> Result<bool, StoreError> {
        for pod in self.pods_on(node, None).await? {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            for claim in claim_references(&pod) {
                let claim: Option<PersistentVolumeClaim> = stored::get(
                    &*self.store,
                    "v1",
                    "PersistentVolumeClaim",
                    Some(&namespace),
                    &claim,
                )
                .await?;
                let volume = claim.and_then(|c| c.spec).and_then(|s| s.volume_name);
                if volume.as_deref() == Some(name) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    async fn pods_on(&self, node: &str, namespace: Option<&str>) -> Result<Vec<Pod>, StoreError> {
        let pods: Vec<Pod> = stored::list(&*self.store, "v1", "Pod", namespace).await?;
        Ok(pods.into_iter().filter(|pod| bound_to(pod, node)).collect())
    }
}

fn bound_to(pod: &Pod, node: &str) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[tokio::test]
    async fn the_graph_cache_follows_bound_pods_and_their_references() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::EmbeddedStore::open(dir.path().join("db")).unwrap());
        let nodes = NodeAuthorizer::with_cache(store.clone());
        let graph = nodes.graph.clone().unwrap();
        let key = registry::store_key("v1", "Pod", Some("ml"), "w").unwrap();
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "namespace": "ml"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}],
                     "volumes": [{"name": "v", "secret": {"secretName": "s"}}]},
        });
        store
            .create(&key, crate::apiserver::objects::to_store(&pod))
            .await
            .unwrap();
        let mut edges = None;
        for _ in 0..500 {
            edges = graph.get(&key);
            if edges.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let edges = edges.expect("the cache saw the pod");
        assert_eq!(edges.node, "n1");
        assert!(edges.secrets.contains("s"));
        let node = |name: &str| UserInfo {
            name: format!("system:node:{name}"),
            uid: String::new(),
            groups: vec![NODES_GROUP.into()],
        };
        let secret = RequestInfo::parse(&Method::GET, "/api/v1/namespaces/ml/secrets/s", None);
        assert_eq!(
            nodes.decide(&node("n1"), &secret).await.unwrap(),
            Decision::Allow
        );
        assert_eq!(
            nodes.decide(&node("n2"), &secret).await.unwrap(),
            Decision::Deny
        );
        store.delete(&key, None).await.unwrap();
        let mut forgotten = false;
        for _ in 0..500 {
            forgotten = graph.get(&key).is_none();
            if forgotten {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(forgotten, "the cache never saw the deletion");
        assert_eq!(
            nodes.decide(&node("n1"), &secret).await.unwrap(),
            Decision::Deny
        );
    }

    #[test]
    fn only_system_node_users_in_system_nodes_are_nodes() {
        let user = |name: &str, groups: &[&str]| UserInfo {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        assert_eq!(
            node_of(&user("system:node:gpu-1", &["system:nodes"])),
            Some("gpu-1")
        );
        assert_eq!(node_of(&user("system:node:gpu-1", &[])), None);
        assert_eq!(node_of(&user("system:node:", &["system:nodes"])), None);
        assert_eq!(node_of(&user("alice", &["system:nodes"])), None);
    }
}
