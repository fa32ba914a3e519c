//! Role-based access control as Kubernetes evaluates it (`rbac.authorization.k8s.io/v1`):
//! a request is allowed when a ClusterRoleBinding, or a RoleBinding in the request's
//! namespace, names the user or one of their groups and points at a role with a rule that
//! covers the request. Nothing else is allowed (no deny rules, as in Kubernetes).
//!
//! - ClusterRoleBinding → ClusterRole: its rules apply everywhere, non-resource URLs too.
//! - RoleBinding → Role (same namespace) or ClusterRole: the rules apply to resource
//!   requests in the binding's namespace only.
//! - A rule covers a request when its `verbs`, `apiGroups` and `resources` (`pods`,
//!   `pods/status`, `*`, `*/status`) match, and `resourceNames`, when given, name the object;
//!   `nonResourceURLs` match exactly or by a trailing `*`.
//!
//! [`Rbac::with_cache`] decides from watch-fed caches of the roles and bindings
//! ([`super::informer`]) and confirms a denial against the store; [`Rbac::new`] reads the
//! store for every request. `system:masters` never gets here.

use std::sync::Arc;

use coxswain_api::k8s::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};
use coxswain_api::registry;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::informer::Informer;
use super::stored;
use super::{RequestInfo, UserInfo};
use crate::apiserver::objects::{new_uid, now, to_store};
use crate::store::{Store, StoreError};

const RBAC: &str = "rbac.authorization.k8s.io/v1";

/// RBAC over the objects in a store.
#[derive(Clone)]
pub struct Rbac {
    store: Arc<dyn Store>,
    cache: Option<Arc<Cache>>,
}

impl std::fmt::Debug for Rbac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rbac").finish_non_exhaustive()
    }
}

/// Roles and bindings kept current by watches.
struct Cache {
    cluster_role_bindings: Informer<ClusterRoleBinding>,
    cluster_roles: Informer<ClusterRole>,
    role_bindings: Informer<RoleBinding>,
    roles: Informer<Role>,
}

impl Rbac {
    /// RBAC reading the roles and bindings in `store` for every request.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, cache: None }
    }

    /// RBAC over watch-fed caches of the roles and bindings in `store` (started on the
    /// current tokio runtime): what a cache allows is allowed; what it denies is checked
    /// against the store, so a binding created a moment ago is never missed, while one
    /// deleted a moment ago may still allow until its deletion is seen (milliseconds), as
    /// with kube-apiserver's informers.
    pub fn with_cache(store: Arc<dyn Store>) -> Self {
        let informer = |kind: &str| {
            let prefix = registry::lookup(RBAC, kind)
                .and_then(|k| k.store_prefix(None).ok())
                .unwrap_or_default();
            (store.clone(), prefix)
        };
        let cache = Cache {
            cluster_role_bindings: {
                let (s, p) = informer("ClusterRoleBinding");
                Informer::start(s, p)
            },
            cluster_roles: {
                let (s, p) = informer("ClusterRole");
                Informer::start(s, p)
            },
            role_bindings: {
                let (s, p) = informer("RoleBinding");
                Informer::start(s, p)
            },
            roles: {
                let (s, p) = informer("Role");
                Informer::start(s, p)
            },
        };
        Self {
            store,
            cache: Some(Arc::new(cache)),
        }
    }

    /// Whether a binding grants `user` what `info` asks.
    pub async fn allows(&self, user: &UserInfo, info: &RequestInfo) -> Result<bool, StoreError> {
        if let Some(cache) = &self.cache
            && decide(&**cache, user, info)
        {
            return Ok(true);
        }
        let namespace = namespace_of(info);
        let snapshot = Snapshot {
            cluster_role_bindings: self.list("ClusterRoleBinding", None).await?,
            cluster_roles: self.list("ClusterRole", None).await?,
            role_bindings: match namespace {
                Some(ns) => self.list("RoleBinding", Some(ns)).await?,
                None => Vec::new(),
            },
            roles: match namespace {
                Some(ns) => self.list("Role", Some(ns)).await?,
                None => Vec::new(),
            },
        };
        Ok(decide(&snapshot, user, info))
    }

    async fn list<T: DeserializeOwned>(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Arc<T>>, StoreError> {
        let objects = stored::list(&*self.store, RBAC, kind, namespace).await?;
        Ok(objects.into_iter().map(Arc::new).collect())
    }
}

/// The roles and bindings a decision reads.
trait View {
    fn cluster_role_bindings(&self) -> Vec<Arc<ClusterRoleBinding>>;
    fn cluster_role(&self, name: &str) -> Option<Arc<ClusterRole>>;
    fn role_bindings(&self, namespace: &str) -> Vec<Arc<RoleBinding>>;
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Role>>;
}

impl View for Cache {
    fn cluster_role_bindings(&self) -> Vec<Arc<ClusterRoleBinding>> {
        self.cluster_role_bindings.list("")
    }
    fn cluster_role(&self, name: &str) -> Option<Arc<ClusterRole>> {
        let key = registry::store_key(RBAC, "ClusterRole", None, name).ok()?;
        self.cluster_roles.get(&key)
    }
    fn role_bindings(&self, namespace: &str) -> Vec<Arc<RoleBinding>> {
        registry::lookup(RBAC, "RoleBinding")
            .and_then(|k| k.store_prefix(Some(namespace)).ok())
            .map(|prefix| self.role_bindings.list(&prefix))
            .unwrap_or_default()
    }
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Role>> {
        let key = registry::store_key(RBAC, "Role", Some(namespace), name).ok()?;
        self.roles.get(&key)
    }
}

/// Roles and bindings read from the store for one decision (the request's namespace only).
struct Snapshot {
    cluster_role_bindings: Vec<Arc<ClusterRoleBinding>>,
    cluster_roles: Vec<Arc<ClusterRole>>,
    role_bindings: Vec<Arc<RoleBinding>>,
    roles: Vec<Arc<Role>>,
}

impl View for Snapshot {
    fn cluster_role_bindings(&self) -> Vec<Arc<ClusterRoleBinding>> {
        self.cluster_role_bindings.clone()
    }
    fn cluster_role(&self, name: &str) -> Option<Arc<ClusterRole>> {
        let named = |r: &&Arc<ClusterRole>| r.metadata.name.as_deref() == Some(name);
        self.cluster_roles.iter().find(named).cloned()
    }
    fn role_bindings(&self, _namespace: &str) -> Vec<Arc<RoleBinding>> {
        self.role_bindings.clone()
    }
    fn role(&self, _namespace: &str, name: &str) -> Option<Arc<Role>> {
        let named = |r: &&Arc<Role>| r.metadata.name.as_deref() == Some(name);
        self.roles.iter().find(named).cloned()
    }
}

fn namespace_of(info: &RequestInfo) -> Option<&str> {
    info.resource
        .as_ref()
        .map(|r| r.namespace.as_str())
        .filter(|ns| !ns.is_empty())
}

/// Whether a binding in `view` grants `user` what `info` asks.
fn decide(view: &dyn View, user: &UserInfo, info: &RequestInfo) -> bool {
    for binding in view.cluster_role_bindings() {
        if binding.role_ref.kind == "ClusterRole"
            && names(user, binding.subjects.as_deref())
            && let Some(role) = view.cluster_role(&binding.role_ref.name)
            && covers(role.rules.as_deref(), info)
        {
            return true;
        }
    }
    let Some(namespace) = namespace_of(info) else {
        return false;
    };
    view.role_bindings(namespace).iter().any(|binding| {
        if !names(user, binding.subjects.as_deref()) {
            return false;
        }
        let name = &binding.role_ref.name;
        match binding.role_ref.kind.as_str() {
            "Role" => view
                .role(namespace, name)
                .is_some_and(|r| covers(r.rules.as_deref(), info)),
            "ClusterRole" => view
                .cluster_role(name)
                .is_some_and(|r| covers(r.rules.as_deref(), info)),
            _ => false,
        }
    })
}

/// Resources the `view` and `edit` roles cover (Kubernetes' aggregated roles, for the kinds
/// coxswain serves); `view` leaves out secrets, as Kubernetes' does.
const WORKLOAD_RESOURCES: &[&str] = &[
    "pods",
    "pods/log",
    "pods/status",
    "services",
    "configmaps",
    "persistentvolumeclaims",
    "events",
    "jobs",
    "cronjobs",
    "deployments",
    "replicasets",
    "daemonsets",
    "trainingjobs",
    "podgroups",
    "queues",
    "pytorchjobs",
];
const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

/// Creates Kubernetes' default roles when missing: `cluster-admin` (everything), bound to
/// the group `system:masters`; `view` (read workloads, not secrets) and `edit` (read and
/// write workloads and secrets) to bind users to; `system:node-bootstrapper` (ask for a
/// node certificate), bound to `system:bootstrappers`.
pub async fn ensure_default_roles(store: &dyn Store) -> Result<(), StoreError> {
    let all = json!(["*"]);
    let view = json!([{"apiGroups": all, "resources": WORKLOAD_RESOURCES, "verbs": READ}]);
    let mut edit_resources: Vec<&str> = WORKLOAD_RESOURCES.to_vec();
    edit_resources.push("secrets");
    let edit_verbs: Vec<&str> = READ.iter().chain(WRITE).copied().collect();
    let edit = json!([{"apiGroups": all, "resources": edit_resources, "verbs": edit_verbs}]);
    let admin = json!([
        {"apiGroups": all, "resources": all, "verbs": all},
        {"nonResourceURLs": all, "verbs": all},
    ]);
    for (name, rules) in [("cluster-admin", admin), ("view", view), ("edit", edit)] {
        ensure(store, "ClusterRole", name, json!({"rules": rules})).await?;
    }
    // Joining nodes (bootstrap tokens) may ask for their client certificate: kubeadm's
    // `system:node-bootstrapper` role bound to `system:bootstrappers`.
    let csr_rules = json!([{
        "apiGroups": ["certificates.k8s.io"],
        "resources": ["certificatesigningrequests"],
        "verbs": ["create", "get", "list", "watch"],
    }]);
    ensure(
        store,
        "ClusterRole",
        "system:node-bootstrapper",
        json!({"rules": csr_rules}),
    )
    .await?;
    for (name, role, group) in [
        ("cluster-admin", "cluster-admin", "system:masters"),
        (
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            "system:bootstrappers",
        ),
    ] {
        let binding = json!({
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        });
        ensure(store, "ClusterRoleBinding", name, binding).await?;
    }
    Ok(())
}

async fn ensure(store: &dyn Store, kind: &str, name: &str, body: Value) -> Result<(), StoreError> {
    let Ok(key) = coxswain_api::registry::store_key(RBAC, kind, None, name) else {
        return Ok(());
    };
    if store.get(&key).await?.is_some() {
        return Ok(());
    }
    let mut object = json!({
        "apiVersion": RBAC,
        "kind": kind,
        "metadata": {
            "name": name, "uid": new_uid(), "creationTimestamp": now(),
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        },
    });
    if let (Some(object), Value::Object(body)) = (object.as_object_mut(), body) {
        object.extend(body);
    }
    match store.create(&key, to_store(&object)).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `subjects` name the user or one of their groups (`system:authenticated`
/// included).
fn names(user: &UserInfo, subjects: Option<&[Subject]>) -> bool {
    subjects
        .unwrap_or_default()
        .iter()
        .any(|s| match s.kind.as_str() {
            "User" => s.name == user.name,
            "ServiceAccount" => {
                let namespace = s.namespace.as_deref().unwrap_or_default();
                user.name == format!("system:serviceaccount:{namespace}:{}", s.name)
            }
            "Group" => s.name == "system:authenticated" || user.groups.contains(&s.name),
            _ => false,
        })
}

/// Whether one of `rules` covers the request.
fn covers(rules: Option<&[PolicyRule]>, info: &RequestInfo) -> bool {
    rules
        .unwrap_or_default()
        .iter()
        .any(|rule| rule_covers(rule, info))
}

fn rule_covers(rule: &PolicyRule, info: &RequestInfo) -> bool {
    if !has(Some(&rule.verbs), &info.verb) {
        return false;
    }
    let Some(r) = &info.resource else {
        return rule.non_resource_urls.iter().flatten().any(|url| {
            url == &info.path
                || url
                    .strip_suffix('*')
                    .is_some_and(|prefix| info.path.starts_with(prefix))
        });
    };
    let resource = if r.subresource.is_empty() {
        r.resource.clone()
    } else {
        format!("{}/{}", r.resource, r.subresource)
    };
    let resource_ok = rule.resources.iter().flatten().any(|allowed| {
        allowed == "*"
            || *allowed == resource
            || (!r.subresource.is_empty() && *allowed == format!("*/{}", r.subresource))
    });
    let names_ok = match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => !r.name.is_empty() && names.contains(&r.name),
    };
    has(rule.api_groups.as_ref(), &r.group) && resource_ok && names_ok
}

fn has(list: Option<&Vec<String>>, value: &str) -> bool {
    list.is_some_and(|l| l.iter().any(|v| v == "*" || v == value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        PolicyRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            api_groups: strings(groups),
            resources: strings(resources),
            resource_names: strings(names),
            non_resource_urls: None,
        }
    }

    fn info(method: Method, path: &str) -> RequestInfo {
        RequestInfo::parse(&method, path, None)
    }

    #[tokio::test]
    async fn the_cache_follows_bindings_and_a_new_binding_is_never_missed() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::EmbeddedStore::open(dir.path().join("db")).unwrap());
        let rbac = Rbac::with_cache(store.clone());
        let cache = rbac.cache.clone().unwrap();
        let alice = UserInfo {
            name: "alice".into(),
            ..UserInfo::default()
        };
        let get = info(Method::GET, "/api/v1/namespaces/ml/configmaps/c");
        assert!(!rbac.allows(&alice, &get).await.unwrap());
        let put = |kind: &str, namespace: &str, name: &str, body: Value| {
            let key = registry::store_key(RBAC, kind, Some(namespace), name).unwrap();
            let mut object = json!({"apiVersion": RBAC, "kind": kind,
                                    "metadata": {"name": name, "namespace": namespace}});
            object
                .as_object_mut()
                .unwrap()
                .extend(body.as_object().unwrap().clone());
            (key, to_store(&object))
        };
        let (role_key, role) = put(
            "Role",
            "ml",
            "reader",
            json!({"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
        );
        store.create(&role_key, role).await.unwrap();
        let (binding_key, binding) = put(
            "RoleBinding",
            "ml",
            "alice",
            json!({"roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "reader"},
                   "subjects": [{"kind": "User", "name": "alice"}]}),
        );
        store.create(&binding_key, binding).await.unwrap();
        // Allowed at once (the store confirms what the cache has not seen yet)...
        assert!(rbac.allows(&alice, &get).await.unwrap());
        // ...and the cache catches up, then follows the binding's deletion.
        let mut seen = false;
        for _ in 0..500 {
            seen = decide(&*cache, &alice, &get);
            if seen {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(seen, "the cache never saw the binding");
        store.delete(&binding_key, None).await.unwrap();
        let mut revoked = false;
        for _ in 0..500 {
            revoked = !rbac.allows(&alice, &get).await.unwrap();
            if revoked {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(revoked, "the cache never saw the deletion");
        assert!(!decide(
            &*cache,
            &alice,
            &info(Method::GET, "/api/v1/namespaces/ml/pods")
        ));
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_and_names() {
        let read_pods = rule(&["get", "list", "watch"], &[""], &["pods", "pods/log"], &[]);
        assert!(rule_covers(
            &read_pods,
            &info(Method::GET, "/api/v1/namespaces/a/pods")
        ));
        assert!(rule_covers(
            &read_pods,
            &info(Method::GET, "/api/v1/namespaces/a/pods/w/log")
        ));
        assert!(!rule_covers(
            &read_pods,
            &info(Method::DELETE, "/api/v1/namespaces/a/pods/w")
        ));
        assert!(!rule_covers(
            &read_pods,
            &info(Method::GET, "/api/v1/namespaces/a/pods/w/status")
        ));
        assert!(!rule_covers(
            &read_pods,
            &info(Method::GET, "/apis/apps/v1/namespaces/a/deployments")
        ));

        let one_job = rule(&["*"], &["coxswain.dev"], &["trainingjobs"], &["llm"]);
        let llm = "/apis/coxswain.dev/v1alpha1/namespaces/a/trainingjobs/llm";
        assert!(rule_covers(&one_job, &info(Method::DELETE, llm)));
        assert!(!rule_covers(
            &one_job,
            &info(Method::DELETE, &llm.replace("llm", "other"))
        ));
        assert!(!rule_covers(
            &one_job,
            &info(
                Method::GET,
                "/apis/coxswain.dev/v1alpha1/namespaces/a/trainingjobs"
            )
        ));

        let statuses = rule(&["update"], &["*"], &["*/status"], &[]);
        assert!(rule_covers(
            &statuses,
            &info(Method::PUT, "/api/v1/namespaces/a/pods/w/status")
        ));
        assert!(!rule_covers(
            &statuses,
            &info(Method::PUT, "/api/v1/namespaces/a/pods/w")
        ));

        let mut metrics = rule(&["get"], &[], &[], &[]);
        metrics.non_resource_urls = Some(vec!["/metrics".into(), "/debug/*".into()]);
        assert!(rule_covers(&metrics, &info(Method::GET, "/metrics")));
        assert!(rule_covers(&metrics, &info(Method::GET, "/debug/pprof")));
        assert!(!rule_covers(&metrics, &info(Method::GET, "/metricsx")));
    }

    #[test]
    fn subjects_name_users_and_groups() {
        let user = UserInfo {
            name: "alice".into(),
            uid: String::new(),
            groups: vec!["ml".into()],
        };
        let subject = |kind: &str, name: &str| Subject {
            kind: kind.into(),
            name: name.into(),
            ..Default::default()
        };
        assert!(names(&user, Some(&[subject("User", "alice")])));
        assert!(names(&user, Some(&[subject("Group", "ml")])));
        assert!(names(
            &user,
            Some(&[subject("Group", "system:authenticated")])
        ));
        assert!(!names(
            &user,
            Some(&[subject("User", "bob"), subject("Group", "dev")])
        ));
        assert!(!names(&user, None));
        let bot = UserInfo {
            name: "system:serviceaccount:ml:bot".into(),
            ..Default::default()
        };
        let account = |ns: &str| Subject {
            kind: "ServiceAccount".into(),
            name: "bot".into(),
            namespace: Some(ns.into()),
            ..Default::default()
        };
        assert!(names(&bot, Some(&[account("ml")])));
        assert!(!names(&bot, Some(&[account("default")])));
    }
}
